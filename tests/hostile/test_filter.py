"""`fmlkit filter` against hostile input: empty and damaged tables, bad values, formula and
HTML cells, and outputs that would replace the input, each other or the dataset."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fmlkit.columns import FILE_NAME, LABEL, PHASH, WIDTH
from fmlkit.data.formats.table import read_dataset_info, read_table
from tests.hostile.check import fmlkit, nothing_complete, refused, succeeded, unchanged

# labels a spreadsheet would run as formulas, and labels a browser would run as markup
FORMULAS = ("=cmd|' -C calc'!A0", "+SUM(A1)", "-2+3", "@SUM(1)")
MARKUP = "<script>alert(1)<"  # a folder name cannot hold '/': the label ends at it


def _image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    small = np.random.default_rng(seed).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(small).resize((40, 40), Image.Resampling.BICUBIC).save(path, "JPEG")


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, Path]:
    """A tree with formula and markup labels and names (and one exact duplicate), scanned."""
    root = tmp_path / "data"
    for k, label in enumerate((*FORMULAS, MARKUP, "plain")):
        for j in range(3):
            _image(root / label / f"{j}.jpg", 10 * k + j)
    _image(root / MARKUP / "<img src=x onerror=alert(2)>.jpg", 0)  # same bytes as FORMULAS[0]/0
    info = tmp_path / "info.csv"
    succeeded(fmlkit("prepare", root, "-o", info, "-j", "1"))
    return root, info


def test_formula_cells_are_kept_verbatim_through_filter_and_split(
    dataset: tuple[Path, Path], tmp_path: Path
) -> None:
    """The documented decision (docs/formats.md): tables are data, written verbatim."""
    _, info = dataset
    for suffix in (".csv", ".parquet"):
        kept, folds = tmp_path / f"f{suffix}", tmp_path / f"s{suffix}"
        succeeded(fmlkit("filter", info, "-o", kept))
        succeeded(fmlkit("split", kept, "-o", folds, "--k", "3"))
        labels = set(read_dataset_info(folds)[LABEL])
        assert set(FORMULAS) <= labels
    raw = (tmp_path / "s.csv").read_text(encoding="utf-8")
    assert "\n=cmd|' -C calc'!A0/0.jpg,=cmd|' -C calc'!A0," in raw  # no quote, no ' prefix


def test_html_in_labels_and_names_is_escaped_in_the_report(
    dataset: tuple[Path, Path], tmp_path: Path
) -> None:
    root, info = dataset
    report = tmp_path / "report"
    result = fmlkit(
        "filter",
        info,
        "-o",
        tmp_path / "f.csv",
        "--dedup",
        "--scope",
        "global",
        "--report",
        report,
        "--root",
        root,
    )
    succeeded(result)
    page = (report / "index.html").read_text(encoding="utf-8")
    assert html.escape(MARKUP) in page  # the label, escaped
    assert html.escape("<img src=x onerror=alert(2)>.jpg") in page  # the file name, escaped
    assert "<script>alert" not in page and "<img src=x" not in page
    assert page.count("<script") == 1  # the page's own table-sorting script only


def _zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def _header_only(path: Path) -> None:
    path.write_text(path.read_text(encoding="utf-8").split("\n")[0] + "\n", encoding="utf-8")


def _edit(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        change(read_table(path)).to_csv(path, index=False)

    return damage


def _set(column: str, value: str, row: int = 1) -> Callable[[Path], None]:
    def change(df: pd.DataFrame) -> pd.DataFrame:
        df[column] = df[column].astype(object)
        df.loc[row, column] = value
        return df

    return _edit(change)


def _text(old: str, new: str, count: int = 1) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace(old, new, count), encoding="utf-8")

    return damage


def _cut(path: Path) -> None:
    path.write_text(path.read_text(encoding="utf-8")[:-30], encoding="utf-8")


def _bytes(data: bytes) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        path.write_bytes(path.read_bytes() + data)

    return damage


REFUSED: dict[str, tuple[Callable[[Path], None], tuple[str, ...], list[str]]] = {
    "zero bytes": (_zero_bytes, (), ["empty (zero bytes)"]),
    "header only": (_header_only, (), ["no rows", "nothing to filter"]),
    "no label column": (_edit(lambda df: df.drop(columns=[LABEL])), (), ["missing", "label"]),
    "a row with an extra field": (_text(".jpg,", ".jpg,x,"), (), ["12 field(s)", "has 11"]),
    "cut mid-row": (_cut, (), ["field(s) where the header has 11", "cut off"]),
    "not utf-8": (_bytes("a/\xe9.jpg,a,1,1,RGB,JPEG,1,1,,,\n".encode("latin-1")), (), ["UTF-8"]),
    "file named twice": (_set(FILE_NAME, "plain/0.jpg"), (), ["more than one row", "plain/0.jpg"]),
    "NaN width": (_set(WIDTH, "NaN"), (), ["width holds 'NaN'", "row 2"]),
    "negative size": (_set("file_size", "-1"), (), ["file_size holds '-1'"]),
    "width 1e308": (_set(WIDTH, "1e308"), (), ["width holds '1e308'", "2,147,483,647"]),
    "malformed phash": (
        _set(PHASH, "zz" * 8),
        ("--dedup", "--confirm", "none"),
        ["phash 'zzzz", "16 hexadecimal"],
    ),
    "phash with spaces": (
        _set(PHASH, "0123 4567 89ab c"),
        ("--dedup", "--confirm", "none"),
        ["'0123 4567 89ab c'"],
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_damaged_table_is_refused_with_one_error_and_no_output(
    dataset: tuple[Path, Path], tmp_path: Path, case: str
) -> None:
    damage, flags, says = REFUSED[case]
    _, info = dataset
    damage(info)
    out, removed = tmp_path / "f.csv", tmp_path / "r.csv"
    refused(fmlkit("filter", info, "-o", out, "--removed", removed, *flags), says=says)
    nothing_complete(out, removed)


def test_a_broken_parquet_table_is_refused(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    _, info = dataset
    table = tmp_path / "info.parquet"
    succeeded(fmlkit("filter", info, "-o", table, "--min-size", "0"))
    table.write_bytes(table.read_bytes()[:-100])  # cut off: no footer
    refused(fmlkit("filter", table, "-o", tmp_path / "f.csv"), says="not a readable Parquet")
    nothing_complete(tmp_path / "f.csv")


def test_extra_columns_are_kept_and_a_missing_optional_one_is_fine(
    dataset: tuple[Path, Path], tmp_path: Path
) -> None:
    _, info = dataset
    df = read_table(info)
    df["note"] = "=HYPERLINK(1)"
    df.drop(columns=["md5"]).to_csv(info, index=False)
    out = tmp_path / "f.csv"
    root, _ = dataset
    succeeded(fmlkit("filter", info, "-o", out, "--dedup", "--root", root))
    assert set(read_table(out)["note"]) == {"=HYPERLINK(1)"}


def test_min_size_above_max_size_is_a_usage_error(
    dataset: tuple[Path, Path], tmp_path: Path
) -> None:
    _, info = dataset
    out = tmp_path / "f.csv"
    refused(
        fmlkit("filter", info, "-o", out, "--min-size", "100", "--max-size", "10"),
        says=["--min-size 100", "--max-size 10"],
        code=2,
    )
    nothing_complete(out)


def test_rules_that_remove_every_row_say_so(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    _, info = dataset
    result = fmlkit("filter", info, "-o", tmp_path / "f.csv", "--min-size", str(10**30))
    succeeded(result)
    assert "Warning: the filter rules removed every row" in result.stdout


@pytest.mark.parametrize(
    ("paths", "says"),
    [
        (lambda d, i: ("-o", i), "the output"),  # in place: the removed rows would be lost
        (lambda d, i: ("-o", d.parent / "f.csv", "--removed", i), "removed table"),
        (lambda d, i: ("-o", d.parent / "f.csv", "--removed", d.parent / "f.csv"), "is the output"),
        (lambda d, i: ("-o", d.parent / "x" / ".." / "info.csv"), "is the input table"),
    ],
)
def test_outputs_that_would_replace_the_input_or_each_other_are_refused(
    dataset: tuple[Path, Path], paths: Callable[[Path, Path], tuple[object, ...]], says: str
) -> None:
    root, info = dataset
    (root.parent / "x").mkdir()
    before = info.read_bytes()
    args = ("filter", info, *paths(root, info), "--overwrite")  # type: ignore[arg-type]
    refused(fmlkit(*args), says=says)  # refused even with --overwrite
    unchanged(info, before)
    nothing_complete(root.parent / "f.csv")


@pytest.mark.parametrize(
    ("report", "says"),
    [
        ("data", "is or holds the dataset folder"),  # the report once replaced the images
        (".", "is the current folder"),
        ("data/report", "inside the dataset folder"),
        ("mine", "not an earlier filter report"),  # a folder of the user's
    ],
)
def test_report_folder_that_would_replace_the_dataset_or_user_files_is_refused(
    dataset: tuple[Path, Path], tmp_path: Path, report: str, says: str
) -> None:
    root, info = dataset
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    args = ("-o", "f.csv", "--report", report, "--root", root, "--overwrite")  # refused even so
    refused(fmlkit("filter", info, *args, cwd=tmp_path), says=says)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "years of work"
    nothing_complete(tmp_path / "f.csv")


def test_an_earlier_report_is_replaced(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    root, info = dataset
    args = ("filter", info, "-o", tmp_path / "f.csv", "--report", tmp_path / "r", "--root", root)
    succeeded(fmlkit(*args))
    refused(fmlkit(*args), says=["already exists", "--overwrite"])
    succeeded(fmlkit(*args, "--overwrite"))
    assert (tmp_path / "r" / "index.html").is_file()


def _bad_bin(d: Path) -> Path:
    from fmlkit.data.formats.insightface_bin import write_bin

    write_bin(d / "bad.bin", [b"not an image", b"nor this"], [True])
    return d / "bad.bin"


def _text(name: str, content: str) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        (d / name).write_text(content, encoding="utf-8")
        return d / name

    return make


@pytest.mark.parametrize(
    ("against", "extra", "says", "code"),
    [
        (lambda d: d / "absent.bin", (), ("--against", "does not exist"), 1),
        (lambda d: d / "data", (), ("--against", "is a directory"), 1),
        (_text("junk.txt", "hello world\n"), (), ("junk.txt", "not a pair list"), 1),
        (_bad_bin, (), ("bad.bin#0", "cannot be read"), 1),
        (_text("p.csv", "1,plain/0.jpg,plain/1.jpg\n"), (), ("--against-root",), 2),
        (
            _text("p.csv", "1,../info.csv,plain/1.jpg\n"),
            ("--against-root", "data"),
            ("../info.csv", "outside --against-root"),
            1,
        ),
        (
            _text("t.csv", "file_name,label,phash\na/1.jpg,a,xyz\n"),
            (),
            ("t.csv", "a/1.jpg", "not 16 hexadecimal"),
            1,
        ),
        (lambda d: d / "info.csv", (), ("--against", "is the input table"), 1),
    ],
)
def test_bad_against_input_is_refused(
    dataset: tuple[Path, Path],
    tmp_path: Path,
    against: Callable[[Path], Path],
    extra: tuple[str, ...],
    says: tuple[str, ...],
    code: int,
) -> None:
    """The leak check's reference (a .bin, pair list or table) that cannot be used: one
    Error: line naming it, and no output written."""
    _, info = dataset
    args = ("filter", info, "-o", "f.csv", "--against", against(tmp_path), *extra)
    refused(fmlkit(*args, cwd=tmp_path), says=says, code=code)
    nothing_complete(tmp_path / "f.csv")


def test_dedup_without_root_is_a_usage_error_naming_the_fix(
    dataset: tuple[Path, Path], tmp_path: Path
) -> None:
    _, info = dataset
    out = tmp_path / "f.csv"
    says = ["--dedup confirms each pHash candidate", "give --root", "--confirm none"]
    refused(fmlkit("filter", info, "-o", out, "--dedup"), says=says, code=2)
    nothing_complete(out)


@pytest.mark.parametrize(
    ("flags", "code", "says"),
    [
        (("--pixel-threshold", "1.5"), 2, ["--pixel-threshold", "1.5"]),
        (("--embedding-threshold", "-2"), 2, ["--embedding-threshold"]),
        (("--confirm", "maybe"), 2, ["--confirm", "maybe"]),
    ],
)
def test_bad_confirmation_options_are_usage_errors(
    dataset: tuple[Path, Path], tmp_path: Path, flags: tuple[str, ...], code: int, says: list[str]
) -> None:
    root, info = dataset
    out = tmp_path / "f.csv"
    refused(fmlkit("filter", info, "-o", out, "--dedup", "--root", root, *flags), says=says,
            code=code)  # fmt: skip
    nothing_complete(out)


def test_embeddings_without_pixel_confirmation_are_a_usage_error(
    dataset: tuple[Path, Path], tmp_path: Path
) -> None:
    root, info = dataset
    out, emb = tmp_path / "f.csv", tmp_path / "emb.parquet"
    emb.write_bytes(b"PAR1")
    for flags in ((), ("--dedup", "--root", root, "--confirm", "none")):
        says = ["--embeddings confirms duplicates", "needs --dedup with --confirm pixels"]
        refused(fmlkit("filter", info, "-o", out, "--embeddings", emb, *flags), says=says, code=2)
    nothing_complete(out)


@pytest.mark.parametrize("content", [b"", b"PAR1 not parquet", None])
def test_an_unusable_embeddings_file_is_refused_before_anything_is_written(
    dataset: tuple[Path, Path], tmp_path: Path, content: bytes | None
) -> None:
    root, info = dataset
    out, removed, emb = tmp_path / "f.csv", tmp_path / "r.csv", tmp_path / "emb.parquet"
    if content is not None:
        emb.write_bytes(content)
    says = ["emb.parquet"] + (["no such file"] if content is None else ["Parquet"])
    refused(fmlkit("filter", info, "-o", out, "--removed", removed, "--dedup", "--root", root,
                   "--embeddings", emb), says=says)  # fmt: skip
    nothing_complete(out, removed)


def test_the_same_output_as_the_embeddings_is_refused(
    dataset: tuple[Path, Path], tmp_path: Path
) -> None:
    root, info = dataset
    emb = tmp_path / "emb.parquet"
    emb.write_bytes(b"PAR1")
    before = emb.read_bytes()
    args = ("-o", emb, "--dedup", "--root", root, "--embeddings", emb, "--overwrite")
    refused(fmlkit("filter", info, *args), says=["embeddings table", "output"])
    unchanged(emb, before)
