"""`fmlkit filter`: drop broken, small and duplicate images from a dataset_info table
(`filter` the stage, `rules` its rules, `dedup` the duplicate finder over `hamming`'s exact
Hamming-distance search, `confirm` the pixel and embedding check of its candidates,
`plausible` the warnings for implausible removals, `report` the HTML report and
`report_charts` its candidate histograms)."""

from __future__ import annotations

from fmlkit.data.filter.filter import FilterReport, FilterRules, filter_dataset

__all__ = ["FilterReport", "FilterRules", "filter_dataset"]
