"""The histogram block of a report page: values binned into bars (an inline SVG), stacked over
named series, with labelled vertical threshold markers.

A stage passes raw values, never counts::

    Histogram(
        "Similarity to the class centroid",
        series=[("keep", kept, "#4c72b0"), ("drop", dropped, "#c44e52")],
        x_label="cosine to the class centroid",
        markers=[Marker(0.30, "drop below"), Marker(0.60, "review below")],
    )

and puts it among a `Page`'s blocks (`fmlkit.report.gallery`). Bins are ``bins`` equal steps
over ``limits`` (default: the finite values' and the markers' span), or explicit increasing
edges (``bins=np.arange(-0.5, 65)`` gives one bar per integer distance). Each bar's counts per
series show on hover (an SVG ``<title>``); the legend gives each series' total, and a line
under the chart gives, per marker, how many values lie below it and at or above it, so the
numbers are there as text too. Non-finite values and values outside ``limits`` are left out
and counted in that line. Every text is HTML-escaped here; callers pass plain strings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

import numpy as np
from numpy.typing import ArrayLike

THRESHOLD = "#b03a3a"  # the default marker colour
_LEFT, _TOP, _PLOT_W, _PLOT_H, _BOTTOM = 56, 34, 720, 200, 38  # the SVG's layout, pixels


@dataclass(frozen=True)
class Marker:
    """A vertical line at ``x`` (a threshold), labelled ``"{label} {x}"`` above the plot;
    ``shown``, when given, replaces the number in that label (e.g. ``"10"`` for a line drawn
    at 10.5, between the bars of integer distances)."""

    x: float
    label: str
    colour: str = THRESHOLD
    shown: str = ""

    def text(self) -> str:
        """The marker's label: its name and value."""
        return f"{self.label} {self.shown or _num(self.x)}"


@dataclass(frozen=True)
class Histogram:
    """A histogram of raw values, stacked over series, with threshold markers.

    Attributes:
        title: the heading.
        series: ``(name, values, colour)``; ``values`` any 1-D float sequence or array.
        x_label: what the values are, with their unit.
        markers: thresholds drawn as labelled vertical lines.
        bins: how many equal bins over ``limits``, or the bin edges themselves (increasing).
        limits: ``(low, high)`` of the x axis; default the span of the finite values and the
            markers. Ignored when ``bins`` gives edges.
        log_y: counts on a logarithmic scale (rare outliers beside a large bulk stay visible).
        y_label: the counts' axis label.
        note: a line of text under the heading.
    """

    title: str
    series: Sequence[tuple[str, ArrayLike, str]]
    x_label: str
    markers: Sequence[Marker] = ()
    bins: int | Sequence[float] = 40
    limits: tuple[float, float] | None = None
    log_y: bool = False
    y_label: str = "count"
    note: str = ""


def histogram_html(chart: Histogram) -> str:
    """The block's HTML: heading, note, legend, the SVG and the markers' counts line."""
    values = [np.asarray(v, dtype=np.float64).ravel() for _, v, _ in chart.series]
    edges = _edges(chart, values)
    counts = [np.histogram(v, bins=edges)[0] for v in values]
    left_out = sum(len(v) for v in values) - sum(int(c.sum()) for c in counts)
    legend = "".join(
        f'<span><i style="background:{escape(colour, quote=True)}"></i>{escape(name)} '
        f"({int(c.sum()):,})</span>"
        for (name, _, colour), c in zip(chart.series, counts, strict=True)
    )
    note = f'<p class="note">{escape(chart.note)}</p>' if chart.note else ""
    return (
        f'<h2>{escape(chart.title)}</h2>{note}<div class="legend">{legend}</div>'
        f"{_svg(chart, edges, counts)}{_tally(chart, values, edges, left_out)}"
    )


def _edges(chart: Histogram, values: list[np.ndarray]) -> np.ndarray:
    """The bin edges: given, or ``bins`` equal steps over the limits (never zero-width)."""
    if not isinstance(chart.bins, int):
        edges = np.asarray(chart.bins, dtype=np.float64)
        if edges.ndim != 1 or len(edges) < 2 or not np.all(np.diff(edges) > 0):
            raise ValueError(f"histogram {chart.title!r}: bins must be increasing edges")
        return edges
    if chart.limits is not None:
        low, high = chart.limits
    else:
        finite = [v[np.isfinite(v)] for v in values]
        points = [*(float(m.x) for m in chart.markers), *(float(f.min()) for f in finite if len(f))]
        points += [float(f.max()) for f in finite if len(f)]
        low, high = (min(points), max(points)) if points else (0.0, 1.0)
    if not high > low:
        pad = max(abs(low) * 0.05, 0.5)
        low, high = low - pad, high + pad
    return np.linspace(low, high, max(1, chart.bins) + 1)


def _svg(chart: Histogram, edges: np.ndarray, counts: list[np.ndarray]) -> str:
    low, high = float(edges[0]), float(edges[-1])
    totals = np.sum(counts, axis=0) if counts else np.zeros(len(edges) - 1, np.int64)
    top = max(1, int(totals.max()) if len(totals) else 0)

    def x_of(v: float) -> float:
        return _LEFT + (v - low) / (high - low) * _PLOT_W

    def y_of(n: float) -> float:
        share = math.log1p(n) / math.log1p(top) if chart.log_y else n / top
        return _TOP + _PLOT_H * (1 - share)

    parts = []
    for k in range(len(edges) - 1):
        x0, x1 = x_of(edges[k]), x_of(edges[k + 1])
        right = "]" if k == len(edges) - 2 else ")"
        tip = f"[{_num(edges[k])}, {_num(edges[k + 1])}{right}: " + ", ".join(
            f"{name} {int(c[k]):,}" for (name, _, _), c in zip(chart.series, counts, strict=True)
        )
        below = 0
        for (_, _, colour), c in zip(chart.series, counts, strict=True):
            if not c[k]:
                continue
            y0, y1 = y_of(below + c[k]), y_of(below)
            below += int(c[k])
            parts.append(
                f'<rect x="{x0 + 0.5:.1f}" y="{y0:.1f}" width="{max(x1 - x0 - 1, 0.5):.1f}" '
                f'height="{max(y1 - y0, 0.5):.1f}" fill="{escape(colour, quote=True)}">'
                f"<title>{escape(tip)}</title></rect>"
            )
    base = _TOP + _PLOT_H
    ticks = "".join(
        f'<line x1="{x_of(t):.1f}" y1="{base}" x2="{x_of(t):.1f}" y2="{base + 4}" stroke="#333"/>'
        f'<text x="{x_of(t):.1f}" y="{base + 16}" text-anchor="middle">{_num(t)}</text>'
        for t in _ticks(low, high)
    )
    width, height = _LEFT + _PLOT_W + 10, base + _BOTTOM
    scale = " (log scale)" if chart.log_y else ""
    return (
        f'<svg class="bars hist" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(chart.title, quote=True)}">'
        f"<g>{''.join(parts)}</g>"
        f'<line x1="{_LEFT}" y1="{base}" x2="{_LEFT + _PLOT_W}" y2="{base}" stroke="#333"/>'
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{base}" stroke="#333"/>'
        f'<text x="{_LEFT - 6}" y="{_TOP + 10}" text-anchor="end">{top:,}</text>'
        f'<text x="{_LEFT - 6}" y="{base}" text-anchor="end">0</text>{ticks}'
        f"{_markers(chart.markers, low, high, x_of)}"
        f'<text x="{_LEFT + _PLOT_W / 2}" y="{base + 34}" text-anchor="middle">'
        f"{escape(chart.x_label)}</text>"
        f'<text transform="translate(14 {_TOP + _PLOT_H / 2}) rotate(-90)" '
        f'text-anchor="middle">{escape(chart.y_label + scale)}</text></svg>'
    )


def _markers(
    markers: Sequence[Marker], low: float, high: float, x_of: Callable[[float], float]
) -> str:
    """Dashed lines with their labels, staggered over two rows so neighbours do not overlap;
    a marker outside the axis is left out of the drawing (the counts line still names it)."""
    shown = sorted((m for m in markers if low <= m.x <= high), key=lambda m: m.x)
    parts = []
    for k, m in enumerate(shown):
        x, colour = x_of(m.x), escape(m.colour, quote=True)
        anchor = "end" if x > _LEFT + 0.7 * _PLOT_W else "start"
        nudge = -3 if anchor == "end" else 3
        text = escape(m.text())
        parts.append(
            f'<g class="marker"><title>{text}</title>'
            f'<line x1="{x:.1f}" y1="{14 + 12 * (k % 2)}" x2="{x:.1f}" '
            f'y2="{_TOP + _PLOT_H}" stroke="{colour}" stroke-width="1.5" stroke-dasharray="4 3"/>'
            f'<text x="{x + nudge:.1f}" y="{10 + 12 * (k % 2)}" text-anchor="{anchor}" '
            f'fill="{colour}">{text}</text></g>'
        )
    return "".join(parts)


def _tally(chart: Histogram, values: list[np.ndarray], edges: np.ndarray, left_out: int) -> str:
    """The counts as text: per marker, the values below it and at or above it (all series);
    and how many values the chart leaves out."""
    pooled = np.concatenate(values) if values else np.zeros(0)
    finite = pooled[np.isfinite(pooled)]
    items = [
        f"{m.text()}: {int((finite < m.x).sum()):,} below, "
        f"{int((finite >= m.x).sum()):,} at or above"
        for m in chart.markers
    ]
    if left_out:
        span = f"[{_num(edges[0])}, {_num(edges[-1])}]"
        values_ = "value" if left_out == 1 else "values"
        items.append(f"{left_out:,} {values_} not shown (not finite, or outside {span})")
    spans = "".join(f"<span>{escape(i)}</span>" for i in items)
    return f'<p class="tally">{spans}</p>' if spans else ""


def _ticks(low: float, high: float) -> list[float]:
    """About six round tick positions within ``[low, high]`` (steps of 1, 2 or 5 × 10^k)."""
    raw = (high - low) / 6
    power = 10 ** math.floor(math.log10(raw))
    step = next(s * power for s in (1, 2, 5, 10) if s * power >= raw)
    first = math.ceil(low / step - 1e-9)
    return [t * step for t in range(first, math.floor(high / step + 1e-9) + 1)]


def _num(value: float) -> str:
    """A short number: 0.3, 0.125, 12, 1.5e+04 (no trailing zeros)."""
    return f"{float(value):.4g}"
