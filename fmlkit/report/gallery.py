"""One self-contained HTML page of galleries: ``DIR/index.html`` with its styles inline and
its thumbnails as files beside it (``DIR/thumbs/NNNNNN.jpg``), so it works offline and from
``file://``. No CDN, no external script or style; a few lines of inline script sort tables.

A page is a list of blocks: `Section` (figures, each a row of `Tile`\\ s: an image with its
caption lines, and the figure's own caption, e.g. a reason and a distance), `Table` and `Bars`
(an inline SVG bar chart) and `Histogram` (raw values binned, with threshold markers:
`fmlkit.report.histogram`). Every text that reaches the page is HTML-escaped here
(``html.escape``, quotes included), so callers pass plain strings.

Thumbnails are written only for the tiles of the page, at most once per source: the longer
side scaled (up or down, bicubic) to `THUMB` pixels, and shown at that natural size. A tile
whose image is missing or unreadable becomes a grey placeholder naming why: a report never
dies on one bad file.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from PIL import Image, ImageOps

from fmlkit.report.histogram import Histogram, histogram_html

THUMB = 112  # pixels, the longer side of every thumbnail
DECIMALS = 3  # a float table cell's decimals
THUMBS = "thumbs"  # the folder beside index.html
Source = Path | bytes | None  # an image file, encoded image bytes, or no image


@dataclass(frozen=True)
class Tile:
    """One image in a figure.

    Attributes:
        source: the image file, its encoded bytes, or None (a placeholder is shown).
        lines: caption lines under the image (a file name, a label), shown in full.
        role: a word above them (``kept``, ``removed``, ``benchmark``); also its CSS class.
        absent: what the grey placeholder says when ``source`` is None (why there is no image).
    """

    source: Source
    lines: tuple[str, ...]
    role: str = ""
    absent: str = "no image"


@dataclass(frozen=True)
class Figure:
    """Tiles side by side, with a caption (the full reason, a distance) under them."""

    tiles: tuple[Tile, ...]
    caption: tuple[str, ...] = ()


@dataclass(frozen=True)
class Section:
    """A heading, a note and figures; ``total`` is how many there are in all (the page says
    "N of M shown" when it exceeds the figures given). Subsections nest one level. ``lead``:
    figures shown first and left out of that count (context, such as a class's typical
    images beside its flagged ones)."""

    title: str
    figures: Sequence[Figure] = ()
    total: int = 0
    note: str = ""
    subsections: Sequence[Section] = ()
    lead: Sequence[Figure] = ()


@dataclass(frozen=True)
class Table:
    """A table whose columns sort on a click; numbers sort as numbers (an int shown with
    thousands separators, a float with `DECIMALS` decimals; a NaN float shows as "–" and sorts
    first)."""

    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[str | int | float]]
    note: str = ""


@dataclass(frozen=True)
class Bars:
    """A bar chart (inline SVG): one bar per category, stacked over the named series.

    Attributes:
        series: ``(name, values, colour)``; each ``values`` has one count per category.
    """

    title: str
    categories: Sequence[str]
    series: Sequence[tuple[str, Sequence[int], str]]
    x_label: str
    y_label: str
    note: str = ""


Block = Section | Table | Bars | Histogram


@dataclass(frozen=True)
class Page:
    """The whole page: a title, summary counts at the top, then the blocks in order.
    ``roles``: a border (and role word) colour per tile role beyond the built-in ``kept``,
    ``removed`` and ``benchmark``; roles not made of letters, digits, ``-`` and ``_`` are
    ignored."""

    title: str
    summary: Sequence[tuple[str, str | int]]
    blocks: Sequence[Block] = ()
    subtitle: str = ""
    warnings: Sequence[str] = field(default_factory=tuple)
    roles: Mapping[str, str] = field(default_factory=dict)


def write_gallery(page: Page, out_dir: Path) -> None:
    """Write ``out_dir/index.html`` and ``out_dir/thumbs/`` (``out_dir`` must exist; the caller
    makes it, usually inside an atomic swap)."""
    thumbs = _Thumbs(out_dir)
    body = "".join(_block(b, k, thumbs) for k, b in enumerate(page.blocks))
    nav = "".join(
        f'<a href="#b{k}">{escape(b.title)}</a>' for k, b in enumerate(page.blocks) if b.title
    )
    summary = "".join(
        f'<div class="card"><b>{_text(v)}</b><span>{escape(k)}</span></div>'
        for k, v in page.summary
    )
    warnings = "".join(f'<p class="warn">{escape(w)}</p>' for w in page.warnings)
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(page.title)}</title><style>{_CSS}{_role_css(page.roles)}</style>"
        "</head><body>"
        f"<header><h1>{escape(page.title)}</h1><p>{escape(page.subtitle)}</p></header>"
        f'<nav>{nav}</nav><main><section id="summary"><div class="cards">{summary}</div>'
        f"{warnings}</section>{body}</main><script>{_SORT_JS}</script></body></html>\n"
    )
    (out_dir / "index.html").write_text(html, encoding="utf-8")


def _role_css(roles: Mapping[str, str]) -> str:
    """Border and role-word colours of extra tile roles (names and colours made CSS-safe)."""
    safe = re.compile(r"[A-Za-z0-9_-]+|#[0-9A-Fa-f]{3,8}|[a-z]+")
    return "".join(
        f".tile.{r} img,.tile.{r} .ph{{border-color:{c}}}.{r} .role{{color:{c}}}"
        for r, c in roles.items()
        if safe.fullmatch(r) and safe.fullmatch(c)
    )


def _text(value: str | int) -> str:
    return f"{value:,}" if isinstance(value, int) else escape(value)


def _block(block: Block, k: int, thumbs: _Thumbs) -> str:
    if isinstance(block, Section):
        return f'<section id="b{k}">{_section(block, thumbs, "h2")}</section>'
    if isinstance(block, Table):
        return f'<section id="b{k}">{_table(block)}</section>'
    if isinstance(block, Histogram):
        return f'<section id="b{k}">{histogram_html(block)}</section>'
    return f'<section id="b{k}">{_bars(block)}</section>'


def _shown(section: Section) -> str:
    """The count badge: "N of M shown" when figures (here or in subsections) were left out."""
    shown = len(section.figures) + sum(len(s.figures) for s in section.subsections)
    total = max(section.total, shown)
    return f"{shown:,} of {total:,} shown" if shown < total else f"{total:,}"


def _section(section: Section, thumbs: _Thumbs, tag: str) -> str:
    figures = "".join(_figure(f, thumbs) for f in (*section.lead, *section.figures))
    grid = f'<div class="grid">{figures}</div>' if figures else ""
    note = f'<p class="note">{escape(section.note)}</p>' if section.note else ""
    subs = "".join(
        f'<div class="sub">{_section(s, thumbs, "h3")}</div>' for s in section.subsections
    )
    subs = f'<div class="subs">{subs}</div>' if subs else ""
    return (
        f'<{tag}>{escape(section.title)} <span class="count">{_shown(section)}</span></{tag}>'
        f"{note}{grid}{subs}"
    )


def _figure(figure: Figure, thumbs: _Thumbs) -> str:
    tiles = "".join(_tile(t, thumbs) for t in figure.tiles)
    caption = "".join(f"<span>{escape(c)}</span>" for c in figure.caption)
    return f'<figure><div class="tiles">{tiles}</div><figcaption>{caption}</figcaption></figure>'


def _tile(tile: Tile, thumbs: _Thumbs) -> str:
    lines = "".join(f'<span class="line">{escape(x)}</span>' for x in tile.lines)
    role = escape(tile.role, quote=True)
    found = thumbs.get(tile.source)
    if isinstance(found, str):
        why = tile.absent if tile.source is None else found
        image = f'<div class="ph" style="width:{THUMB}px;height:{THUMB}px">{escape(why)}</div>'
    else:
        name, w, h = found
        alt = escape(tile.lines[0] if tile.lines else tile.role, quote=True)
        image = f'<img src="{THUMBS}/{name}" width="{w}" height="{h}" alt="{alt}">'
    return (
        f'<div class="tile {role}">{image}<div class="cap"><span class="role">{escape(tile.role)}'
        f"</span>{lines}</div></div>"
    )


class _Thumbs:
    """Writes each source's thumbnail once; ``get`` gives ``(file, width, height)`` or the
    placeholder text for a missing or unreadable image."""

    def __init__(self, out_dir: Path) -> None:
        self.folder = out_dir / THUMBS
        self.done: dict[object, tuple[str, int, int] | str] = {}

    def get(self, source: Source) -> tuple[str, int, int] | str:
        if source is None:
            return "no image"
        if source not in self.done:
            self.done[source] = self._write(source, f"{len(self.done):06d}.jpg")
        return self.done[source]

    def _write(self, source: Path | bytes, name: str) -> tuple[str, int, int] | str:
        try:
            opened = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
            with opened as img:
                upright = ImageOps.exif_transpose(img).convert("RGB")
        except FileNotFoundError:
            return "file missing"
        except Exception:  # a report must not die on one bad file
            return "cannot be read"
        scale = THUMB / max(upright.size)
        size = (max(1, round(upright.width * scale)), max(1, round(upright.height * scale)))
        self.folder.mkdir(exist_ok=True)
        upright.resize(size, Image.Resampling.BICUBIC).save(self.folder / name, quality=88)
        return name, size[0], size[1]


def _table(table: Table) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    rows = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in table.rows)
    note = f'<p class="note">{escape(table.note)}</p>' if table.note else ""
    return (
        f'<h2>{escape(table.title)}</h2>{note}<div class="scroll"><table class="sortable">'
        f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"
    )


def _cell(value: str | int | float) -> str:
    if isinstance(value, int):
        return f'<td class="n" data-v="{value}">{value:,}</td>'
    if isinstance(value, float):
        if value != value:  # NaN
            return '<td class="n" data-v="-Infinity">–</td>'
        key = repr(value).replace("inf", "Infinity")  # what JavaScript's Number() reads
        return f'<td class="n" data-v="{key}">{value:,.{DECIMALS}f}</td>'
    return f"<td>{escape(value)}</td>"


def _bars(chart: Bars) -> str:
    """Stacked bars as an SVG, each with a tooltip (``<title>``) giving its counts."""
    n = max(1, len(chart.categories))
    totals = [sum(s[1][k] for s in chart.series) for k in range(len(chart.categories))]
    top = max([1, *totals])
    left, bottom, plot_w, plot_h = 56, 36, 720, 200
    bar = plot_w / n
    parts = []
    for k, category in enumerate(chart.categories):
        y = float(plot_h)
        tip = ", ".join(f"{s[0]} {s[1][k]:,}" for s in chart.series)
        for _, values, colour in chart.series:
            h = values[k] / top * plot_h
            if values[k]:
                y -= h
                x, w = left + k * bar + 0.5, max(bar - 1, 0.5)
                parts.append(
                    f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}"'
                    f' height="{max(h, 0.5):.1f}" fill="{escape(colour, quote=True)}">'
                    f"<title>{escape(category)}: {escape(tip)}</title></rect>"
                )
    step = max(1, -(-n // 12))  # at most ~12 tick labels
    ticks = "".join(
        f'<text x="{left + (k + 0.5) * bar:.1f}" y="{plot_h + 16}" text-anchor="middle">'
        f"{escape(c)}</text>"
        for k, c in enumerate(chart.categories)
        if k % step == 0
    )
    legend = "".join(
        f'<span><i style="background:{escape(c, quote=True)}"></i>{escape(name)} '
        f"({sum(values):,})</span>"
        for name, values, c in chart.series
    )
    note = f'<p class="note">{escape(chart.note)}</p>' if chart.note else ""
    width, height = left + plot_w + 10, plot_h + bottom + 8
    return (
        f'<h2>{escape(chart.title)}</h2>{note}<div class="legend">{legend}</div>'
        f'<svg class="bars" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img"><g>{"".join(parts)}</g>'
        f'<line x1="{left}" y1="{plot_h}" x2="{left + plot_w}" y2="{plot_h}" stroke="#333"/>'
        f'<line x1="{left}" y1="0" x2="{left}" y2="{plot_h}" stroke="#333"/>'
        f'<text x="{left - 6}" y="10" text-anchor="end">{top:,}</text>'
        f'<text x="{left - 6}" y="{plot_h}" text-anchor="end">0</text>{ticks}'
        f'<text x="{left + plot_w / 2}" y="{plot_h + 32}" text-anchor="middle">'
        f"{escape(chart.x_label)}</text>"
        f'<text transform="translate(14 {plot_h / 2}) rotate(-90)" text-anchor="middle">'
        f"{escape(chart.y_label)}</text></svg>"
    )


_CSS = """
:root{--kept:#2a7a2a;--removed:#b03a3a;--bench:#6a4cb0;--line:#ddd}
*{box-sizing:border-box}
body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;
background:#f6f6f4}
header{background:#23313f;color:#fff;padding:14px 24px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#c9d3dc}
nav{position:sticky;top:0;z-index:1;background:#fff;border-bottom:1px solid var(--line);
padding:6px 24px;display:flex;flex-wrap:wrap;gap:4px 14px}
nav a{color:#23517a;text-decoration:none;font-size:13px}nav a:hover{text-decoration:underline}
main{padding:8px 24px 40px}
section{margin:18px 0}h2{font-size:18px;margin:18px 0 6px}h3{font-size:15px;margin:14px 0 6px}
.count{font-weight:normal;font-size:13px;color:#666;background:#e8e8e4;border-radius:9px;
padding:1px 8px;margin-left:6px}
.note{color:#555;margin:2px 0 8px;max-width:70em}
.warn{background:#fff3cd;border:1px solid #e0c36a;padding:8px 12px;max-width:70em}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#fff;border:1px solid var(--line);border-radius:6px;padding:8px 14px;
min-width:120px}.card b{display:block;font-size:20px}.card span{color:#555;font-size:12px}
.grid{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}
figure{margin:0;background:#fff;border:1px solid var(--line);border-radius:6px;padding:6px;
width:min-content}
.tiles{display:flex;gap:6px}
.tile{width:120px;display:flex;flex-direction:column;align-items:center}
.tile img{display:block}.tile .ph{display:flex}
.tile img,.tile .ph{border:3px solid #999;border-radius:3px;image-rendering:auto}
.tile.kept img,.tile.kept .ph{border-color:var(--kept)}
.tile.removed img,.tile.removed .ph{border-color:var(--removed)}
.tile.benchmark img,.tile.benchmark .ph{border-color:var(--bench)}
.ph{background:#bbb;color:#333;font-size:11px;display:flex;align-items:center;
justify-content:center;text-align:center;padding:4px}
.cap{width:100%;font-size:11px;line-height:1.3;margin-top:3px}
.cap span{display:block;overflow-wrap:anywhere}
.role{font-weight:bold;text-transform:uppercase;font-size:10px;letter-spacing:.04em}
.kept .role{color:var(--kept)}.removed .role{color:var(--removed)}
.benchmark .role{color:var(--bench)}
.line:nth-child(2){font-family:ui-monospace,Menlo,Consolas,monospace}
figcaption{font-size:12px;border-top:1px solid var(--line);margin-top:5px;padding-top:4px}
figcaption span{display:block;overflow-wrap:anywhere}
figcaption span:first-child{font-weight:600}
.subs{display:flex;flex-wrap:wrap;gap:8px 18px;align-items:flex-start}
.sub{border-left:3px solid #c7cdd3;padding-left:10px}.sub h3{margin-top:6px}
.scroll{max-height:520px;overflow:auto;border:1px solid var(--line);background:#fff;
display:inline-block;max-width:100%}
table{border-collapse:collapse;font-size:13px}
th,td{padding:4px 10px;border-bottom:1px solid #eee;text-align:left;white-space:nowrap}
td.n{text-align:right;font-variant-numeric:tabular-nums}
th{position:sticky;top:0;background:#eef1f4;cursor:pointer;user-select:none}
th:hover{background:#dde3e9}
svg.bars{background:#fff;border:1px solid var(--line);max-width:100%;height:auto}
svg.bars text{font-size:11px;fill:#333}
.legend{display:flex;gap:16px;font-size:12px;margin:4px 0}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
.tally{font-size:12px;color:#444;margin:4px 0}.tally span{display:block}
svg.hist .marker text{font-size:11px;font-weight:600}
"""

# Click a column heading to sort by it (numbers by value); a second click reverses.
_SORT_JS = """
document.querySelectorAll("table.sortable th").forEach(function (th) {
  th.addEventListener("click", function () {
    var col = th.cellIndex, body = th.closest("table").tBodies[0];
    var dir = th.dataset.dir === "asc" ? -1 : 1;
    th.dataset.dir = dir === 1 ? "asc" : "desc";
    var key = function (row) {
      var cell = row.cells[col];
      return cell.dataset.v !== undefined ? Number(cell.dataset.v) : cell.textContent;
    };
    Array.from(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b);
      return (x < y ? -1 : x > y ? 1 : 0) * dir;
    }).forEach(function (row) { body.appendChild(row); });
  });
});
"""
