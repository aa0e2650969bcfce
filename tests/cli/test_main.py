from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from fmlkit import __version__
from fmlkit.cli._common import BROKEN_PIPE_EXIT, stdout_reader_gone
from fmlkit.main import main
from tests.conftest import SynthTree
from tests.processes import run_fmlkit


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            found += _commands(cmd, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


@pytest.mark.parametrize("path", _commands(main), ids=lambda p: " ".join(p) or "fmlkit")
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert len(result.output.splitlines()) > 3


def test_version_prints_package_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"fmlkit, version {__version__}"


def test_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys; from fmlkit.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('torch', 'timm', 'numpy', 'PIL', 'pandas', 'pyarrow')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "fmlkit"
    if not script.exists():
        pytest.skip("not running from an environment with the console script")
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and __version__ in out.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("synth", "OUT", "--identities", "0", "--images-per-identity", "3"),
        ("synth", "OUT", "--identities", "2", "--images-per-identity", "0"),
        ("synth", "OUT", "--identities", "2"),
        ("synth", "OUT", "-n", "2", "-m", "2", "--size", "16"),
        ("prepare", "OUT", "-o", "info.txt"),
        ("prepare", "OUT", "-o", "info.csv", "--hash", "phash,md6"),
        ("prepare", "OUT", "-o", "info.csv", "--workers", "0"),
        ("prepare", "OUT"),
        ("no-such-command",),
        ("-v", "-q", "synth", "OUT", "-n", "1", "-m", "1"),
    ],
)
def test_bad_options_exit_2_without_traceback(tmp_path: Path, args: tuple[str, ...]) -> None:
    out = run_fmlkit(*(str(tmp_path / a) if a == "OUT" else a for a in args))
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert "Error:" in out.stderr
    assert not (tmp_path / "OUT").exists()


def test_existing_output_exits_1_with_one_error_line(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    out = run_fmlkit("synth", str(tmp_path / "data"), "-n", "1", "-m", "1")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "overwrite" in errors[0]


def test_unwritable_output_exits_1_without_traceback(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = run_fmlkit("synth", str(blocker / "data"), "-n", "1", "-m", "1")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("Error:")


def _into_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m fmlkit ARGS`` with stdout a real pipe whose reader has already gone (as
    ``| head -1`` is once it has its line): every write to stdout fails with EPIPE."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "fmlkit", *args],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)


@pytest.mark.parametrize("args", [("--help",), ("--version",), ("synth", "--help")])
def test_closed_stdout_exits_quietly_like_sigpipe(args: tuple[str, ...]) -> None:
    out = _into_closed_pipe(*args)
    assert (out.returncode, out.stderr) == (BROKEN_PIPE_EXIT, "")


def test_closed_stdout_after_the_work_is_no_error(tmp_path: Path) -> None:
    out = _into_closed_pipe("synth", str(tmp_path / "d"), "-n", "2", "-m", "2")
    assert (out.returncode, out.stderr) == (BROKEN_PIPE_EXIT, "")
    assert (tmp_path / "d.truth.csv").is_file()  # the work was done; only its report was lost


def test_only_a_stdout_without_reader_counts_as_a_closed_pipe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read, write = os.pipe()
    with os.fdopen(write, "w") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)  # here: pytest sets its own per phase
        try:
            assert not stdout_reader_gone()  # a broken pipe elsewhere stays an error
            os.close(read)
            assert stdout_reader_gone()
        finally:
            monkeypatch.undo()
            with contextlib.suppress(OSError):  # closed above
                os.close(read)


def test_synth_command_writes_tree_and_reports(tmp_path: Path) -> None:
    out = run_fmlkit("synth", str(tmp_path / "d"), "-n", "3", "-m", "2", "--seed", "5")
    assert out.returncode == 0, out.stderr
    assert "Wrote 6 clean images of 3 identities" in out.stdout
    assert (tmp_path / "d.truth.csv").is_file()
    assert len([p for p in (tmp_path / "d").rglob("*") if p.is_file()]) > 6


def test_verbose_logs_to_stderr_not_stdout(tmp_path: Path) -> None:
    out = run_fmlkit("-v", "synth", str(tmp_path / "d"), "-n", "1", "-m", "2", "--no-defects")
    assert out.returncode == 0, out.stderr
    assert "INFO: synth:" in out.stderr
    assert "INFO" not in out.stdout


def test_quiet_prints_nothing_on_success(tmp_path: Path) -> None:
    out = run_fmlkit("-q", "synth", str(tmp_path / "d"), "-n", "2", "-m", "2")
    assert out.returncode == 0
    assert out.stdout == "" and out.stderr == ""
    assert (tmp_path / "d.truth.csv").is_file()


def test_prepare_command_writes_table_and_summary(synth_tree: SynthTree, tmp_path: Path) -> None:
    info = tmp_path / "info.parquet"
    out = run_fmlkit(
        "prepare", str(synth_tree.root), "-o", str(info), "--hash", "phash,dhash", "-j", "2"
    )
    assert out.returncode == 0, out.stderr
    n = len(synth_tree.truth)
    assert f"{n} images" in out.stdout and "20 labels" in out.stdout
    assert "errors: empty 1, not_image 1, truncated 2" in out.stdout
    assert f"Wrote {info}" in out.stdout
    assert out.stderr == ""  # no progress bar when stderr is not a terminal
    again = run_fmlkit(
        "prepare", str(synth_tree.root), "-o", str(info), "--previous", str(info), "--overwrite"
    )
    assert again.returncode == 0, again.stderr
    assert (
        f"read 4 files, reused 175 rows from {info}" in again.stdout
    )  # the 4 broken files are re-checked


def test_prepare_missing_dataset_dir_exits_1_with_one_error_line(tmp_path: Path) -> None:
    out = run_fmlkit("prepare", str(tmp_path / "nope"), "-o", str(tmp_path / "i.csv"))
    assert out.returncode == 1
    assert out.stderr.strip() == f"Error: dataset folder {tmp_path / 'nope'} does not exist"
    assert not (tmp_path / "i.csv").exists()


def test_prepare_quiet_prints_nothing(synth_tree: SynthTree, tmp_path: Path) -> None:
    out = run_fmlkit("-q", "prepare", str(synth_tree.root), "-o", str(tmp_path / "i.csv"))
    assert out.returncode == 0
    assert out.stdout == "" and out.stderr == ""
    assert (tmp_path / "i.csv").is_file()


def test_filter_command_writes_kept_removed_and_report(
    synth_tree: SynthTree, tmp_path: Path
) -> None:
    info = tmp_path / "info.csv"
    assert run_fmlkit("-q", "prepare", str(synth_tree.root), "-o", str(info)).returncode == 0
    args = ["filter", str(info), "-o", str(tmp_path / "kept.csv"), "--removed"]
    args += [str(tmp_path / "removed.parquet"), "--dedup", "--scope", "global"]
    out = run_fmlkit(*args, "--report", str(tmp_path / "rep"), "--root", str(synth_tree.root))
    assert out.returncode == 0, out.stderr
    assert "cross_label_duplicate 3" in out.stdout and "kept 160" in out.stdout
    assert (tmp_path / "rep" / "index.html").is_file()


@pytest.mark.parametrize(
    "extra", [["--threshold", "65"], ["--global-threshold", "-1"], ["--report", "rep"]]
)
def test_filter_bad_options_exit_2(tmp_path: Path, extra: list[str]) -> None:
    (tmp_path / "info.csv").write_text("file_name,label,phash\na/1.jpg,a,0000000000000000\n")
    out = run_fmlkit("filter", str(tmp_path / "info.csv"), "-o", str(tmp_path / "k.csv"), *extra)
    assert out.returncode == 2 and "Traceback" not in out.stderr


def test_filter_report_without_root_is_a_usage_error_naming_the_flags(tmp_path: Path) -> None:
    (tmp_path / "info.csv").write_text("file_name,label\na/1.jpg,a\n")
    out = run_fmlkit(
        "filter", str(tmp_path / "info.csv"), "-o", str(tmp_path / "k.csv"), "--report", "rep"
    )
    assert out.returncode == 2
    assert "Error: --report needs --root, the dataset folder" in out.stderr
    assert not (tmp_path / "k.csv").exists()


def test_filter_missing_column_exits_1_naming_it(tmp_path: Path) -> None:
    (tmp_path / "info.csv").write_text("file_name,label\na/1.jpg,a\n")
    out = run_fmlkit(
        "filter", str(tmp_path / "info.csv"), "-o", str(tmp_path / "k.csv"), "--dedup",
        "--confirm", "none",
    )  # fmt: skip
    assert out.returncode == 1
    assert out.stderr.startswith("Error:") and "phash" in out.stderr
    assert not (tmp_path / "k.csv").exists()


def test_filter_min_size_above_max_size_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "info.csv").write_text("file_name,label,width,height\na/1.jpg,a,50,50\n")
    args = ["filter", str(tmp_path / "info.csv"), "-o", str(tmp_path / "k.csv")]
    out = run_fmlkit(*args, "--min-size", "100", "--max-size", "10")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "Error: --min-size 100 is larger than --max-size 10" in out.stderr
    assert not (tmp_path / "k.csv").exists()


def test_filter_that_removes_every_row_says_so(tmp_path: Path) -> None:
    (tmp_path / "info.csv").write_text("file_name,label,width,height\na/1.jpg,a,28,28\n")
    out = run_fmlkit("filter", str(tmp_path / "info.csv"), "-o", str(tmp_path / "k.csv"))
    assert out.returncode == 0, out.stderr
    assert "WARNING: the filter rules removed every row (1 of 1)" in out.stderr
    assert "Warning: the filter rules removed every row (1 of 1)" in out.stdout
    assert "--min-size" in out.stdout
