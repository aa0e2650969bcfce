"""The histogram block of the page builder (fmlkit/report/histogram.py): binning, stacking,
threshold markers, counts as text and on hover, escaping, values it cannot draw."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from fmlkit.report import Histogram, Marker, Page, write_gallery
from fmlkit.report.histogram import histogram_html

SCRIPT = "<script>alert(1)</script>"


def _bars(html: str) -> list[tuple[float, str]]:
    """Each drawn bar's height and tooltip."""
    found = re.findall(r'<rect [^>]*height="([\d.]+)"[^>]*><title>([^<]*)</title>', html)
    return [(float(h), t) for h, t in found]


def test_histogram_bins_values_and_stacks_series() -> None:
    chart = Histogram(
        "similarities",
        [("keep", [0.05, 0.15, 0.15, 0.95], "#00f"), ("drop", [0.15], "#f00")],
        "cosine",
        bins=[0.0, 0.1, 0.2, 1.0],
    )
    html = histogram_html(chart)
    tips = [t for _, t in _bars(html)]
    # one rect per non-empty (bin, series); the tooltip gives every series' count in the bin
    assert tips.count("[0, 0.1): keep 1, drop 0") == 1
    assert tips.count("[0.1, 0.2): keep 2, drop 1") == 2  # stacked: two rects
    assert tips.count("[0.2, 1]: keep 1, drop 0") == 1
    assert "keep (4)" in html and "drop (1)" in html  # legend totals
    heights: dict[str, float] = {}
    for h, t in _bars(html):
        heights[t] = heights.get(t, 0.0) + h  # a stack's height is its rects' sum
    one = heights["[0, 0.1): keep 1, drop 0"]
    assert heights["[0.1, 0.2): keep 2, drop 1"] == pytest.approx(3 * one, abs=0.2)


def test_histogram_markers_are_drawn_labelled_and_counted() -> None:
    values = np.array([0.1, 0.2, 0.5, 0.7, 0.9])
    chart = Histogram(
        "t", [("all", values, "#00f")], "cosine", [Marker(0.3, "drop below"), Marker(0.6, "x")]
    )
    html = histogram_html(chart)
    assert html.count('<g class="marker">') == 2
    assert ">drop below 0.3</text>" in html and ">x 0.6</text>" in html
    assert "drop below 0.3: 2 below, 3 at or above" in html
    assert "x 0.6: 3 below, 2 at or above" in html


def test_histogram_range_reaches_the_markers() -> None:
    """A threshold beyond every value still shows: the axis stretches to it."""
    chart = Histogram("t", [("all", [0.5, 0.6], "#00f")], "cosine", [Marker(0.9, "merge above")])
    html = histogram_html(chart)
    assert '<g class="marker">' in html and "merge above 0.9: 2 below, 0 at or above" in html


def test_histogram_leaves_out_and_counts_what_it_cannot_draw() -> None:
    values = [0.5, np.nan, np.inf, -np.inf, 2.0]
    html = histogram_html(Histogram("t", [("all", values, "#00f")], "v", limits=(0.0, 1.0)))
    assert "4 values not shown (not finite, or outside [0, 1])" in html
    assert sum(1 for _ in _bars(html)) == 1


@pytest.mark.parametrize(
    "series",
    [[], [("none", [], "#00f")], [("bad", [np.nan], "#00f")], [("one", [0.4, 0.4], "#00f")]],
)
def test_histogram_of_nothing_or_one_value_draws_axes(series: list) -> None:
    html = histogram_html(Histogram("empty", series, "v", [Marker(0.4, "m")]))
    assert "<svg" in html and "</svg>" in html
    assert not re.search(r"\bnan\b|\binf\b", html)


def test_histogram_refuses_edges_that_do_not_increase() -> None:
    with pytest.raises(ValueError, match="increasing"):
        histogram_html(Histogram("t", [("a", [1.0], "#00f")], "v", bins=[0.0, 0.0, 1.0]))


def test_histogram_escapes_every_text(tmp_path: Path) -> None:
    quote = '" onmouseover="alert(1)'
    chart = Histogram(
        SCRIPT,
        [(SCRIPT, [0.2, 0.4], quote)],
        SCRIPT,
        [Marker(0.3, SCRIPT, quote)],
        y_label=SCRIPT,
        note=SCRIPT,
    )
    write_gallery(Page("p", [], [chart]), tmp_path)
    text = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert SCRIPT not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert 'onmouseover="' not in text
    assert text.count("<script>") == 1  # only the page's own sorting script


def test_histogram_marker_may_show_its_own_value() -> None:
    """A line drawn between integer bars (10.5) can say the threshold it stands for."""
    marker = Marker(10.5, "--threshold", shown="10 bits")
    html = histogram_html(Histogram("t", [("d", [8, 10, 12], "#00f")], "bits", [marker]))
    assert ">--threshold 10 bits</text>" in html and "10.5" not in html.split("<svg")[0]
    assert "--threshold 10 bits: 2 below, 1 at or above" in html
