"""The filter report's histograms of the dedup candidates: pHash distances, pixel
correlations and embedding cosines, confirmed against not, with the thresholds marked."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fmlkit.data.filter.dedup import Candidates
from fmlkit.report.histogram import Histogram, Marker

if TYPE_CHECKING:
    from fmlkit.data.filter.rules import FilterRules


def candidate_charts(candidates: Candidates, rules: FilterRules) -> list[Histogram]:
    """The candidate pairs' distances and similarities, confirmed against not, thresholds
    marked (the evidence for the thresholds)."""
    c = candidates
    yes, no = c.confirmed, ~c.confirmed
    kept_word = "not confirmed (both kept)" if rules.confirm == "pixels" else "not confirmed"
    markers = [Marker(float(rules.threshold), "--threshold")]  # pairs at or below it
    if rules.scope == "global":
        markers.append(Marker(float(rules.global_threshold), "--global-threshold", "#8172b2"))
    charts = [
        Histogram(
            "pHash distances of the candidate pairs",
            [("confirmed", c.distance[yes], "#dd8452"), (kept_word, c.distance[no], "#4c72b0")],
            "pHash distance, bits (a 64-bit pHash has 32 set bits: distances are even)",
            markers=markers,
            bins=np.arange(-0.5, max(rules.threshold, rules.global_threshold) + 1.5).tolist(),
            log_y=True,
            note=f"{c.pairs:,} pairs within reach of the hashes (md5 copies aside), "
            f"{int(yes.sum()):,} confirmed.",
        )
    ]
    if rules.confirm != "pixels":
        return charts
    for title, values, threshold, option in (
        ("pixel correlation", c.pixel, rules.pixel_threshold, "--pixel-threshold"),
        ("embedding cosine", c.embedding, rules.embedding_threshold, "--embedding-threshold"),
    ):
        if not np.isfinite(values).any():
            continue
        charts.append(
            Histogram(
                f"The candidate pairs' {title}",
                [("confirmed", values[yes], "#dd8452"), (kept_word, values[no], "#4c72b0")],
                f"{title} of the two images"
                + (" (normalised 16×16 grey thumbnails)" if option == "--pixel-threshold" else ""),
                markers=[Marker(threshold, option)],
                bins=80,
                log_y=True,
                note=f"A pair is removed only at or above {option} {threshold:g}"
                + (" (and the other test)." if np.isfinite(c.embedding).any() else "."),
            )
        )
    return charts
