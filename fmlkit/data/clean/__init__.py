"""`fmlkit clean`: curation with a face model's embeddings — mislabelled images (drop,
review, relabel), classes to merge, mixed classes to split, embedding near-duplicates and
per-class quality (`stage`: `clean`, reading and writing; `decide` the rules over
`similarity` and `groups` and `mixed`; `options` the thresholds; `auto` thresholds from the
data; `truth` the scores against synth's truth; `report` the HTML report).

`CleanReport` and `clean` are loaded when first used, so the command line can read
`CleanOptions`' defaults for its help without importing numpy and pandas."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fmlkit.data.clean.options import CleanOptions

if TYPE_CHECKING:
    from fmlkit.data.clean.stage import CleanReport, clean

__all__ = ["CleanOptions", "CleanReport", "clean"]


def __getattr__(name: str) -> Any:
    if name in ("CleanReport", "clean"):
        from fmlkit.data.clean import stage

        return getattr(stage, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
