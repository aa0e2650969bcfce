"""`fmlkit prepare`: scan class folders into a dataset_info table (`walk` lists the files,
`probe` reads each one once, `readers` run the probes in local processes or on a Dask
cluster, `scan` drives them and writes the table)."""

from __future__ import annotations

from fmlkit.data.prepare.scan import ScanReport, scan_dataset

__all__ = ["ScanReport", "scan_dataset"]
