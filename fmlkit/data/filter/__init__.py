"""`fmlkit filter`: drop broken, small and duplicate images from a dataset_info table
(`filter` the stage and its rules, `dedup` the duplicate finder over `hamming`'s exact
Hamming-distance search, `report` the HTML report)."""

from __future__ import annotations

from fmlkit.data.filter.filter import FilterReport, FilterRules, filter_dataset

__all__ = ["FilterReport", "FilterRules", "filter_dataset"]
