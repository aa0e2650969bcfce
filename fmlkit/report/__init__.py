"""Self-contained HTML galleries for curation reports (`fmlkit filter --report`,
`fmlkit clean --report`): a page of sections of figures, tables, bar charts (`gallery`) and
histograms of raw values with labelled threshold markers (`histogram`).

The page builder knows nothing of filtering: a stage turns its decisions into `Section`\\ s of
`Figure`\\ s (each a row of `Tile`\\ s with captions) and calls `write_gallery`.
"""

from __future__ import annotations

from fmlkit.report.gallery import Bars, Figure, Page, Section, Table, Tile, write_gallery
from fmlkit.report.histogram import Histogram, Marker

__all__ = [
    "Bars",
    "Figure",
    "Histogram",
    "Marker",
    "Page",
    "Section",
    "Table",
    "Tile",
    "write_gallery",
]
