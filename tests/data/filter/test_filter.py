from __future__ import annotations

import logging
import signal
from pathlib import Path

import pandas as pd
import pytest

from fmlkit.columns import (
    DISTANCE,
    DUPLICATE_OF,
    EMBEDDING_SIMILARITY,
    ERROR,
    FILE_NAME,
    HEIGHT,
    LABEL,
    PHASH,
    PIXEL_SIMILARITY,
    REASON,
    WIDTH,
)
from fmlkit.data.filter.confirm import Confirmer
from fmlkit.data.filter.dedup import CROSS, EXACT, NEAR
from fmlkit.data.filter.filter import FilterRules, decide, filter_dataset
from fmlkit.data.formats.table import read_dataset_info, read_table
from fmlkit.data.prepare.scan import scan_dataset
from fmlkit.data.synth.synth import generate_synthetic_dataset
from fmlkit.errors import InputError, OptionError, SchemaError
from fmlkit.io import FAULT_ENV
from tests.conftest import SynthTree
from tests.hostile.check import fmlkit, fmlkit_process, nothing_complete, succeeded, unchanged


@pytest.fixture(scope="module")
def synth_info(synth_tree: SynthTree, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("filter") / "info.csv"
    scan_dataset(synth_tree.root, out, workers=2)
    return out


def _pairs(synth_tree: SynthTree, kind: str) -> list[tuple[str, str]]:
    return [(t[FILE_NAME], t["source"]) for t in synth_tree.truth if t["kind"] == kind]


@pytest.mark.parametrize("scope", ["label", "global"])
def test_filter_resolves_the_planted_defects(
    synth_tree: SynthTree, synth_info: Path, scope: str
) -> None:
    df = read_dataset_info(synth_info)
    confirmer = Confirmer(synth_tree.root)  # defaults otherwise: pixel confirmation
    decision = decide(df, FilterRules(dedup=True, scope=scope), confirmer=confirmer)
    reason = dict(zip(df[FILE_NAME], decision[REASON], strict=True))
    kinds = {t[FILE_NAME]: t["kind"] for t in synth_tree.truth}
    # no clean image is removed
    assert [f for f, k in kinds.items() if k == "clean" and reason[f]] == []
    for f, src in _pairs(synth_tree, "exact_duplicate"):
        assert (reason[f], reason[src]) == (EXACT, ""), f
    near = _pairs(synth_tree, "near_duplicate")
    resolved = [f for f, src in near if reason[f] == NEAR and reason[src] == ""]
    assert len(resolved) >= 0.95 * len(near) and near
    cross = _pairs(synth_tree, "cross_label_duplicate")
    assert cross
    for f, src in cross:
        assert (reason[f], reason[src]) == (CROSS if scope == "global" else "", ""), f
    for f, k in kinds.items():
        if k in ("tiny", "corrupt", "empty", "not_image"):
            assert reason[f] != "", (f, k)


def test_filter_outputs_partition_the_input(
    synth_tree: SynthTree, synth_info: Path, tmp_path: Path
) -> None:
    report = filter_dataset(
        synth_info,
        tmp_path / "kept.parquet",
        FilterRules(dedup=True, scope="global"),
        removed=tmp_path / "removed.csv",
        root=synth_tree.root,
    )
    src = read_table(synth_info)
    kept = read_table(tmp_path / "kept.parquet")
    removed = read_table(tmp_path / "removed.csv")
    assert len(kept) + len(removed) == len(src) == report.rows
    assert sorted([*kept[FILE_NAME], *removed[FILE_NAME]]) == sorted(src[FILE_NAME])
    assert list(kept.columns) == list(src.columns)  # input columns, input order
    assert list(kept[FILE_NAME]) == [f for f in src[FILE_NAME] if f in set(kept[FILE_NAME])]
    similarities = [PIXEL_SIMILARITY, EMBEDDING_SIMILARITY]
    assert list(removed.columns) == [*src.columns, REASON, DUPLICATE_OF, DISTANCE, *similarities]
    dup = removed[removed[REASON].isin([EXACT, NEAR, CROSS])]
    assert set(dup[DUPLICATE_OF]) <= set(kept[FILE_NAME])  # they point at kept rows
    assert dup[DISTANCE].notna().all()
    assert set(removed.loc[~removed[REASON].isin([EXACT, NEAR, CROSS]), DUPLICATE_OF]) == {""}
    assert report.removed == dict(removed[REASON].value_counts())


def test_filter_keep_errors_and_size_limits(synth_info: Path) -> None:
    df = read_dataset_info(synth_info)
    kept_errors = decide(df, FilterRules(keep_errors=True, min_size=None))
    assert (kept_errors[REASON] == "").all()
    sized = decide(df, FilterRules(min_size=110, max_size=114))
    w = df[WIDTH]
    assert set(sized.loc[(df[ERROR] == "") & (w < 110), REASON]) == {"too_small"}
    assert set(sized.loc[(df[ERROR] == "") & (w > 114), REASON]) == {"too_large"}
    assert set(sized.loc[df[ERROR] != "", REASON]) == {f"error:{e}" for e in set(df[ERROR]) - {""}}


def test_filter_errors_name_columns_and_rows(tmp_path: Path) -> None:
    table = pd.DataFrame({FILE_NAME: ["a/1.jpg", "a/2.jpg"], LABEL: ["a", "a"]})
    with pytest.raises(SchemaError, match="phash"):
        decide(table, FilterRules(dedup=True, min_size=None, confirm="none"))
    with pytest.raises(SchemaError, match="width, height"):
        decide(table)  # the default --min-size needs sizes
    table[PHASH] = ["00000000000000ff", "not-a-hash"]
    with pytest.raises(InputError, match=r"row 1 \(a/2.jpg\)"):
        decide(table, FilterRules(dedup=True, min_size=None, confirm="none"))
    with pytest.raises(InputError, match="between 0 and 64"):
        decide(table, FilterRules(dedup=True, threshold=-1, min_size=None, confirm="none"))
    with pytest.raises(OptionError, match="report_dir needs root"):
        filter_dataset(tmp_path / "x.csv", tmp_path / "y.csv", report_dir=tmp_path / "r")


def _sized_table(path: Path, sides: list[int], errors: list[str] | None = None) -> Path:
    """A dataset_info table of square images with these side lengths (and errors)."""
    n = len(sides)
    table = pd.DataFrame(
        {
            FILE_NAME: [f"a/{i}.jpg" for i in range(n)],
            LABEL: "a",
            WIDTH: sides,
            HEIGHT: sides,
            ERROR: errors or [""] * n,
        }
    )
    table.to_csv(path, index=False)
    return path


def test_rules_that_remove_every_row_warn_naming_the_rule(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    info = _sized_table(tmp_path / "info.csv", [28, 28, 28, 0], ["", "", "", "decode"])
    with caplog.at_level(logging.WARNING, logger="fmlkit.data.filter.filter"):
        report = filter_dataset(info, tmp_path / "kept.csv")  # the default min_size 32
    assert (report.rows, report.kept) == (4, 0)
    assert len(read_table(tmp_path / "kept.csv")) == 0  # still written, to be looked at
    assert "removed every row (4 of 4); most (3) as too_small" in report.warning
    assert "lower min_size (--min-size; 0 turns the limit off)" in report.warning
    assert report.summary().splitlines()[-1] == f"Warning: {report.warning}"
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, report.warning)
    ]


def test_the_warning_names_the_rule_that_removed_most_rows(tmp_path: Path) -> None:
    errors = ["decode", "empty", "decode", ""]
    info = _sized_table(tmp_path / "info.csv", [0, 0, 0, 500], errors)
    report = filter_dataset(info, tmp_path / "kept.csv", FilterRules(max_size=400))
    assert "most (3) as error (the images could not be read" in report.warning
    report = filter_dataset(info, tmp_path / "kept.csv", FilterRules(min_size=None))
    assert (report.kept, report.warning) == (1, "")  # a row kept: no warning
    assert "Warning" not in report.summary()


def test_min_size_above_max_size_is_refused_naming_both() -> None:
    with pytest.raises(OptionError) as refused:
        FilterRules(min_size=100, max_size=10)
    assert refused.value.options == ("min_size", "max_size")
    assert str(refused.value).startswith("min_size=100 is larger than max_size=10: no image")
    assert FilterRules(min_size=64, max_size=64).max_size == 64  # equal limits can both hold


# filter renames kept.csv, then removed.csv, then the report folder: a kill at each point
# leaves this many of them (in that order) new, the rest as they were
_RENAMED = {
    ("written", "kept.csv"): 0,
    ("renamed", "kept.csv"): 1,
    ("renamed", "removed.csv"): 2,
    ("renamed", "report"): 3,
}


@pytest.mark.parametrize(("point", "name"), list(_RENAMED))
def test_filter_killed_between_its_renames(tmp_path: Path, point: str, name: str) -> None:
    """filter killed at each point of renaming its outputs, which are committed together but
    renamed one by one (``FMLKIT_FAULT_WRITE``): each is absent or as it was until its own
    rename, then whole; only hidden temporary entries are left; a rerun writes all anew."""
    root, info = tmp_path / "data", tmp_path / "info.csv"
    generate_synthetic_dataset(root, identities=2, images_per_identity=3, defects=False)
    scan_dataset(root, info, workers=1)
    kept, removed, report = tmp_path / "kept.csv", tmp_path / "removed.csv", tmp_path / "report"
    renamed = _RENAMED[(point, name)]
    for min_size in ("0", "9999"):  # first no outputs (keep all), then those (remove all)
        old = [p.read_bytes() if p.exists() else None for p in (kept, removed)]
        old_page = (report / "index.html").read_text() if report.exists() else None
        args = ("-q", "filter", info, "-o", kept, "--removed", removed, "--min-size", min_size)
        args += ("--report", report, "--root", root, "--overwrite")
        killed = fmlkit_process(*args, env={FAULT_ENV: f"{point}@{name}"})
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        rows = [len(read_table(p)) if p.exists() else None for p in (kept, removed)]
        new_rows = [6, 0] if min_size == "0" else [0, 6]
        for i, p in enumerate((kept, removed)):
            if i < renamed:
                assert rows[i] == new_rows[i], p
            elif old[i] is None:
                nothing_complete(p)
            else:
                unchanged(p, old[i])
        page = (report / "index.html").read_text() if report.exists() else None
        if renamed < 3:
            assert page == old_page
        else:
            assert page is not None and ("too_small" in page) == (min_size == "9999")
        outputs = ("data", "data.truth.csv", "info.csv", "kept.csv", "removed.csv", "report")
        left = {p.name for p in tmp_path.iterdir()} - set(outputs)
        assert all(".tmp-" in n and n.startswith((".kept", ".removed", ".report")) for n in left)
        succeeded(fmlkit(*args))
        assert [len(read_table(p)) for p in (kept, removed)] == new_rows
        assert ("too_small" in (report / "index.html").read_text()) == (min_size == "9999")
