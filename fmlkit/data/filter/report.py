"""The visual report of `fmlkit filter`: counts, a distance histogram and contact sheets.

``DIR/index.html`` links ``distances.png`` (pHash distances of the removed duplicates to the
row they duplicate) and contact sheets: the largest duplicate groups (the kept image first,
then the removed ones) and every cross-label duplicate pair, each thumbnail captioned with
its label, file name and distance, so a person can judge a threshold by eye.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw, ImageOps

from fmlkit.columns import DISTANCE, DUPLICATE_OF, FILE_NAME, LABEL, REASON
from fmlkit.data.filter.dedup import CROSS, DUPLICATE_REASONS
from fmlkit.errors import InputError
from fmlkit.io import atomic_path

THUMB = 112
CAPTION = 36
GROUP_SHEETS = 10  # largest groups shown
GROUP_COLUMNS = 8  # images per group row (the kept one and up to 7 removed)
PAIRS_PER_SHEET = 24
LISTED_ROWS = 500  # removed duplicates listed by name in index.html
_REPORT_SUFFIXES = (".html", ".png")
Cell = tuple[str, str, str]  # file_name, label, caption line


def check_report_dir(out_dir: Path, *, root: Path) -> None:
    """Refuse a report folder whose writing would replace what is not an earlier report: a
    file, a folder holding anything but a report's ``.html`` and ``.png`` files, the dataset
    folder ``root``, a folder holding it, or a folder inside it (links followed).

    Raises:
        InputError: naming the folder and what it holds.
    """
    target, images = out_dir.resolve(), root.resolve()
    fix = "choose a new folder for the report"
    if target == images or target in images.parents:
        raise InputError(
            f"the report folder {out_dir} is or holds the dataset folder {root}: writing the "
            f"report would replace the images; {fix}"
        )
    if images in target.parents:
        raise InputError(
            f"the report folder {out_dir} lies inside the dataset folder {root}: its images "
            f"would be scanned as a class next time; {fix}, outside it"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"the report folder {out_dir} is a file, not a folder; {fix}")
    if out_dir.is_dir():
        entries = sorted(out_dir.iterdir())
        foreign = [e.name for e in entries if not (e.is_file() and e.suffix in _REPORT_SUFFIXES)]
        if entries and (foreign or not (out_dir / "index.html").is_file()):
            shown = ", ".join(foreign[:3]) or "no index.html"
            raise InputError(
                f"the report folder {out_dir} is not an earlier filter report ({shown}); "
                f"writing the report would delete what it holds. Empty it, or {fix}"
            )


def write_filter_report(
    df: pd.DataFrame, decision: pd.DataFrame, out_dir: Path, *, root: Path
) -> None:
    """Write the report folder ``out_dir`` (replaced atomically) for a `decide` result
    (`check_report_dir` first)."""
    check_report_dir(out_dir, root=root)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        _histogram(decision, tmp / "distances.png")
        groups = _group_sheets(df, decision, root, tmp)
        pairs = _cross_sheets(df, decision, root, tmp)
        listing = _listing(df, decision)
        (tmp / "index.html").write_text(_page(decision, groups, pairs, listing), encoding="utf-8")


def _histogram(decision: pd.DataFrame, path: Path) -> None:
    """Bars of removed duplicates per pHash distance (0..64 bits), one colour per reason."""
    colours = {"exact_duplicate": "#4c72b0", "near_duplicate": "#dd8452", CROSS: "#c44e52"}
    dup = decision[decision[REASON].isin(DUPLICATE_REASONS)]
    counts = {r: dup.loc[dup[REASON] == r, DISTANCE].astype(int).value_counts() for r in colours}
    totals = pd.Series(0, index=range(65))
    for c in counts.values():
        totals = totals.add(c, fill_value=0)
    top = max(1, int(totals.max()))
    w, h, left, bottom, bar = 720, 320, 60, 40, 10
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    plot_h = h - bottom - 30
    for d in range(65):
        y = h - bottom
        for reason, colour in colours.items():
            n = int(counts[reason].get(d, 0))
            if n:
                bar_h = max(1, round(n / top * plot_h))
                draw.rectangle(
                    [left + d * bar, y - bar_h, left + d * bar + bar - 2, y], fill=colour
                )
                y -= bar_h
    draw.line([left, h - bottom, left + 65 * bar, h - bottom], fill="black")
    draw.line([left, h - bottom, left, 20], fill="black")
    for d in range(0, 65, 8):
        draw.text((left + d * bar, h - bottom + 5), str(d), fill="black")
    draw.text((left + 250, h - 18), "pHash distance to the kept image (bits)", fill="black")
    draw.text((5, 20), f"{top:,}", fill="black")
    draw.text((5, h - bottom - 10), "0", fill="black")
    for k, (reason, colour) in enumerate(colours.items()):
        draw.rectangle([w - 200, 10 + 16 * k, w - 190, 20 + 16 * k], fill=colour)
        draw.text((w - 185, 9 + 16 * k), f"{reason} ({int(counts[reason].sum()):,})", fill="black")
    img.save(path)


def _thumb(root: Path, name: str) -> Image.Image:
    try:
        with Image.open(root / name) as img:
            upright = ImageOps.exif_transpose(img).convert("RGB")
            upright.thumbnail((THUMB, THUMB))
            return upright
    except Exception:  # a report must not die on one bad file
        return Image.new("RGB", (THUMB, THUMB), "#999999")


def _sheet(rows: Sequence[Sequence[Cell]], root: Path, path: Path) -> None:
    """A grid: one list of cells per row; each cell a thumbnail with two caption lines."""
    cols = max(len(r) for r in rows)
    img = Image.new("RGB", (cols * (THUMB + 8) + 8, len(rows) * (THUMB + CAPTION + 8) + 8), "white")
    draw = ImageDraw.Draw(img)
    for r, cells in enumerate(rows):
        for c, (name, label, caption) in enumerate(cells):
            x, y = 8 + c * (THUMB + 8), 8 + r * (THUMB + CAPTION + 8)
            img.paste(_thumb(root, name), (x, y))
            draw.text((x, y + THUMB + 2), label[:18], fill="black")
            draw.text((x, y + THUMB + 14), caption[:18], fill="#c44e52" if c else "#2a7a2a")
    img.save(path)


def _group_sheets(df: pd.DataFrame, decision: pd.DataFrame, root: Path, out: Path) -> list[str]:
    """Sheets of the largest duplicate groups: kept image, then the removed ones."""
    dup = decision[decision[REASON].isin(DUPLICATE_REASONS)]
    if dup.empty:
        return []
    sizes = dup[DUPLICATE_OF].value_counts().head(GROUP_SHEETS)
    labels = dict(zip(df[FILE_NAME], df[LABEL], strict=True))
    rows = []
    for kept, _ in sizes.items():
        members = dup[dup[DUPLICATE_OF] == kept].sort_values(DISTANCE, kind="stable")
        cells: list[Cell] = [(str(kept), labels[kept], "kept")]
        for idx, m in members.head(GROUP_COLUMNS - 1).iterrows():
            name = df.at[idx, FILE_NAME]
            cells.append((name, labels[name], f"d={m[DISTANCE]} {m[REASON][:5]}"))
        rows.append(cells)
    _sheet(rows, root, out / "groups.png")
    return ["groups.png"]


def _cross_sheets(df: pd.DataFrame, decision: pd.DataFrame, root: Path, out: Path) -> list[str]:
    """Every cross-label duplicate: kept image beside the removed one, PAIRS_PER_SHEET a sheet."""
    cross = decision[decision[REASON] == CROSS]
    labels = dict(zip(df[FILE_NAME], df[LABEL], strict=True))
    pairs: list[list[Cell]] = []
    for idx, row in cross.iterrows():
        name = df.at[idx, FILE_NAME]
        kept = row[DUPLICATE_OF]
        pairs.append([(kept, labels[kept], "kept"), (name, labels[name], f"d={row[DISTANCE]}")])
    names = []
    for k in range(0, len(pairs), PAIRS_PER_SHEET):
        names.append(f"cross_{k // PAIRS_PER_SHEET + 1:03d}.png")
        _sheet(pairs[k : k + PAIRS_PER_SHEET], root, out / names[-1])
    return names


def _listing(df: pd.DataFrame, decision: pd.DataFrame) -> str:
    """An HTML table of the removed duplicates (up to `LISTED_ROWS`): the full file names and
    labels the contact sheets cut short, every cell escaped."""
    dup = decision[decision[REASON].isin(DUPLICATE_REASONS)]
    if dup.empty:
        return ""
    labels = dict(zip(df[FILE_NAME], df[LABEL], strict=True))
    rows = []
    for idx, row in dup.head(LISTED_ROWS).iterrows():
        name, kept = str(df.at[idx, FILE_NAME]), str(row[DUPLICATE_OF])
        cells = (name, labels.get(name, ""), row[REASON], kept, labels.get(kept, ""))
        text = "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
        rows.append(f"<tr>{text}<td>{row[DISTANCE]}</td></tr>")
    more = (
        f"<p>… and {len(dup) - LISTED_ROWS:,} more (the removed table lists them all).</p>"
        if len(dup) > LISTED_ROWS
        else ""
    )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("removed", "label", "reason", "duplicate of", "its label", "distance")
    )
    return (
        "<h2>Removed duplicates</h2><table border='1' cellpadding='4'>"
        f"<tr>{head}</tr>{''.join(rows)}</table>{more}"
    )


def _page(decision: pd.DataFrame, groups: list[str], pairs: list[str], listing: str = "") -> str:
    counts = decision[REASON].replace("", "kept").value_counts()
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{v:,}</td></tr>" for k, v in counts.items()
    )
    images = "".join(
        f'<h3>{html.escape(n)}</h3><img src="{html.escape(n)}" alt="{html.escape(n)}">'
        for n in groups + pairs
    )
    cross_note = "" if pairs else "<p>No cross-label duplicates.</p>"
    return (
        "<!doctype html><meta charset='utf-8'><title>fmlkit filter report</title>"
        "<h1>fmlkit filter report</h1><h2>Rows by decision</h2>"
        f"<table border='1' cellpadding='4'><tr><th>reason</th><th>rows</th></tr>{rows}</table>"
        "<h2>Distances of removed duplicates</h2><img src='distances.png' alt='histogram'>"
        "<h2>Largest duplicate groups and cross-label duplicates</h2>"
        "<p>First image: kept (green caption); then the removed ones with their distance.</p>"
        f"{cross_note}{images}{listing}"
    )
