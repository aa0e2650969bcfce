"""Start fmlkit's Dask workers as SLURM jobs with dask-jobqueue (docs/scale.md).

Edit the values marked EDIT, run it on a login node (`python examples/slurm_cluster.py`),
and point any per-image stage at the address it prints:
`fmlkit prepare /shared/faces -o /shared/faces.parquet --cluster tcp://…`.
Enter stops the workers (or the walltime does).
"""

from __future__ import annotations

from dask_jobqueue import SLURMCluster


def make_cluster(port: int = 8786, dashboard: str | None = ":8787") -> SLURMCluster:
    """The scheduler here, and the job each node runs: 32 single-thread worker processes."""
    return SLURMCluster(
        queue="cpu",  # EDIT: the partition
        account="myproject",  # EDIT: the account to charge
        cores=32,  # EDIT: cores per node
        processes=32,  # one worker process per core, one thread each (fmlkit's stages want that)
        memory="128GB",  # EDIT: memory per node (split among the 32 workers)
        walltime="04:00:00",
        job_extra_directives=["--exclusive"],
        python="/shared/envs/fmlkit/bin/python",  # EDIT: the same fmlkit on every node
        local_directory="/tmp",  # the workers' scratch: node-local disk
        scheduler_options={"port": port, "dashboard_address": dashboard},
    )


if __name__ == "__main__":
    cluster = make_cluster()
    cluster.scale(jobs=8)  # EDIT: nodes
    print(f"--cluster {cluster.scheduler_address}")
    input("workers start as their jobs do; Enter stops them\n")
    cluster.close()
