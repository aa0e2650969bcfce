from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fmlkit.columns import FOLD, LABEL, SPLIT
from fmlkit.data.formats.pair_lists import read_csv_pairs, read_lfw_pairs
from fmlkit.data.formats.table import read_table
from fmlkit.main import main
from tests.processes import run_fmlkit


def test_split_then_pairs_commands_chain_on_the_filtered_synth_table(
    synth_filtered: Path, tmp_path: Path
) -> None:
    folds, holdout = tmp_path / "folds.parquet", tmp_path / "split.csv"
    out = run_fmlkit("split", str(synth_filtered), "-o", str(folds), "--k", "5", "--seed", "28")
    assert out.returncode == 0, out.stderr
    assert "Split 160 rows into 5 folds by image (seed 28)" in out.stdout
    assert read_table(folds)[FOLD].value_counts().to_dict() == dict.fromkeys(range(5), 32)
    args = ["--mode", "classes", "--test-fraction", "0.25", "--seed", "1"]
    out = run_fmlkit("split", str(synth_filtered), "-o", str(holdout), *args)
    assert out.returncode == 0, out.stderr
    table = read_table(holdout)
    assert table.groupby(SPLIT)[LABEL].nunique().to_dict() == {"test": 5, "train": 15}
    pairs = tmp_path / "test_pairs.csv"
    args = ["--split", "test", "--positives", "60", "--negatives", "60", "--seed", "3"]
    out = run_fmlkit("pairs", str(holdout), "-o", str(pairs), *args)
    assert out.returncode == 0, out.stderr
    assert "Drew 60 positive and 60 negative pairs from split test: 40 rows, 5 labels" in out.stdout
    listed = read_csv_pairs(pairs)
    test_files = set(table.loc[table[SPLIT] == "test", "file_name"])
    assert set(listed["first"]) | set(listed["second"]) <= test_files
    assert listed["is_same"].sum() == 60 and len(listed) == 120


def test_pairs_command_writes_lfw_pairs_txt(synth_filtered: Path, tmp_path: Path) -> None:
    folds = tmp_path / "folds.csv"
    runner = CliRunner()
    args = ["split", str(synth_filtered), "-o", str(folds), "--by", "label", "--k", "2"]
    assert runner.invoke(main, args).exit_code == 0
    pairs = tmp_path / "pairs.txt"
    args = ["pairs", str(folds), "-o", str(pairs), "--fold", "1", "--positives", "50"]
    result = runner.invoke(main, [*args, "--negatives", "50", "--format", "lfw"])
    assert result.exit_code == 0, result.output
    assert "numbers are 1-based positions" in result.output
    lfw = read_lfw_pairs(pairs)
    assert pairs.read_text().startswith("10\t5\n")
    assert lfw.groupby("fold")["is_same"].agg(["sum", "size"]).to_numpy().tolist() == [[5, 10]] * 10


@pytest.mark.parametrize(
    "extra",
    [
        ["--seed", "abc"],
        ["--seed", "1.5"],
        ["--seed", "-3"],
        ["--k", "1"],
        ["--by", "identity"],
        ["--mode", "classes"],
        ["--mode", "classes", "--k", "3", "--test-fraction", "0.1"],
        ["--mode", "classes", "--test-fraction", "0.1", "--min-samples", "3"],
        ["--mode", "classes", "--test-fraction", "1.0"],
        ["--test-fraction", "0.1"],
        ["-o", "out.txt"],
    ],
)
def test_split_bad_options_exit_2(synth_filtered: Path, tmp_path: Path, extra: list[str]) -> None:
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(main, ["split", str(synth_filtered), "-o", str(out), *extra])
    assert result.exit_code == 2, result.output
    assert "Error:" in result.output and result.exception is not None
    assert not out.exists() and not (tmp_path / "out.txt").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--k", "9"], "no label has 9 usable rows"),
        (["--k", "21", "--by", "label"], "need at least 21 labels; the table has 20"),
        (["--k", "500"], "500 folds need at least 500 usable rows; the table has 160"),
    ],
)
def test_split_impossible_requests_exit_1_with_one_error_line(
    synth_filtered: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    out = run_fmlkit("split", str(synth_filtered), "-o", str(tmp_path / "o.csv"), *extra)
    assert out.returncode == 1
    assert out.stderr.startswith("Error:") and message in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.csv").exists()


def test_split_missing_label_column_exits_1_naming_it(tmp_path: Path) -> None:
    (tmp_path / "info.csv").write_text("file_name,width\na/1.jpg,10\n")
    out = run_fmlkit("split", str(tmp_path / "info.csv"), "-o", str(tmp_path / "o.csv"))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("Error:") and "missing column(s) label" in out.stderr


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ([], 2),  # neither --fold nor --split
        (["--fold", "0", "--split", "test"], 2),
        (["--split", "val"], 2),
        (["--fold", "0", "--positives", "0", "--negatives", "0"], 2),
        (["--fold", "0", "--format", "lfw", "--negatives", "20"], 2),
        (["--fold", "0", "--max-per-label", "0"], 2),
        (["--fold", "7"], 1),  # no such fold
        (["--split", "test"], 1),  # folds table: no split column
        (["--fold", "0", "--positives", "1000"], 1),  # more than possible
    ],
)
def test_pairs_bad_requests_exit_with_one_error_line(
    synth_filtered: Path, tmp_path: Path, extra: list[str], code: int
) -> None:
    folds = tmp_path / "folds.csv"
    assert CliRunner().invoke(main, ["split", str(synth_filtered), "-o", str(folds)]).exit_code == 0
    counts = ["--positives", "10", "--negatives", "10"]  # extra may override (last one wins)
    result = CliRunner().invoke(
        main, ["pairs", str(folds), "-o", str(tmp_path / "p.csv"), *counts, *extra]
    )
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit)  # click's exit, not a crash
    assert [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert not (tmp_path / "p.csv").exists()
