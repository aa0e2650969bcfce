"""`fmlkit align`: faces from raw photos, aligned to a 5-point template (from a landmark file or a
detector), or warped with the RoI tanh-polar transform."""

from __future__ import annotations

from fmlkit.data.align.align import AlignReport, align_dataset

__all__ = ["AlignReport", "align_dataset"]
