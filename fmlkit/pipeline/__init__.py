"""Pipelines: stages declared in YAML, run in dependency order with versioned artifacts.

- `fmlkit.pipeline.spec`: read and validate ``pipelines/NAME.yaml`` (`load_pipeline`);
  `fmlkit.pipeline.graph` checks how its stages connect (references, overlaps, order).
- `fmlkit.pipeline.stages`: the stage registry; each stage is the click command the CLI runs,
  with its paths split into deps and outs.
- `fmlkit.pipeline.paths`: paths compared with symbolic links followed (not the store's).
- `fmlkit.pipeline.versions`: content versions of files, folders and Parquet datasets.
- `fmlkit.pipeline.lock`: the lock file ``pipelines/NAME.lock``.
- `fmlkit.pipeline.artifacts`: the versioned output store, provenance and restore.
- `fmlkit.pipeline.runner`: `run_pipeline` and `pipeline_status`; `fmlkit.pipeline.assess`
  says whether a stage is up to date against its lock entry, and why not.
- `fmlkit.pipeline.settings`: settings as dotted keys (``optim.lr``), the keys a config file
  changed, and the store's copies of small YAML deps that status compares with.
- `fmlkit.pipeline.runs`: `compare_runs`, the table of evaluate versions with the training
  settings that differ and their metrics; `fmlkit.pipeline.lineage` finds the train version
  an evaluate version came from.
- `fmlkit.pipeline.commands`: ``fmlkit run``, ``fmlkit status``, ``fmlkit artifacts``,
  ``fmlkit runs``.

The pipeline stands on the stage commands of `fmlkit.cli` and is mounted with them by
`fmlkit.main`; `fmlkit.cli` imports nothing from here.

See docs/pipelines.md.
"""
