"""Self-contained HTML galleries for curation reports (`fmlkit filter --report`, and the
coming `clean` stage): a page of sections of figures, tables and bar charts (`gallery`).

The page builder knows nothing of filtering: a stage turns its decisions into `Section`\\ s of
`Figure`\\ s (each a row of `Tile`\\ s with captions) and calls `write_gallery`.
"""

from __future__ import annotations

from fmlkit.report.gallery import Bars, Figure, Page, Section, Table, Tile, write_gallery

__all__ = ["Bars", "Figure", "Page", "Section", "Table", "Tile", "write_gallery"]
