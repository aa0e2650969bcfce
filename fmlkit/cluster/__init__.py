"""Run one function over the shards of a stage on a Dask cluster (``--cluster ADDRESS``).

``ADDRESS`` is ``local:N`` (a `distributed.LocalCluster` of N worker processes on this
machine, one thread each, closed at the end) or a running scheduler's ``tcp://host:port``
(``tls://…``), from which fmlkit only disconnects. `cluster_session` opens either and yields a
`ClusterSession`: `ClusterSession.check_shared` proves every worker sees the stage's paths,
`ClusterSession.map` runs ``fn`` over the shards and returns the results in shard order.

A worker that dies mid-task (killed, out of memory) costs only its shard: the scheduler runs
it again on another worker, up to ``distributed.scheduler.allowed-failures`` times (3 by
default; at least 3 on a local cluster), so a task may run more than once and must write its
outputs idempotently (temporary name, then rename). A task that raises is not retried: its
exception reaches the caller as it was raised (an `fmlkit.errors.FmlkitError` keeps its class
and message) and the other tasks are cancelled.

Dask is an optional extra (``pip install 'fmlkit[cluster]'``), imported only inside the
functions here: nothing imports it unless ``--cluster`` is given. See docs/cluster.md.
"""

from __future__ import annotations

from fmlkit.cluster.connect import cluster_session, parse_address
from fmlkit.cluster.session import SHARED_FS, ClusterSession, describe
from fmlkit.errors import ClusterError

__all__ = [
    "SHARED_FS",
    "ClusterError",
    "ClusterSession",
    "cluster_session",
    "describe",
    "parse_address",
]
