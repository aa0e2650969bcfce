"""Hostile input to the pipeline commands (run, status, artifacts, runs): pipeline files and
lock files that are bombs, code, broken or contradictory; outputs that would overwrite what the
user owns; a restore that cannot be recorded; a hash cache held by a running stage; a store
whose records and metrics are damaged (runs still shows a row for each)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result

from fmlkit.pipeline.artifacts import PROVENANCE
from tests.hostile.check import fmlkit, refused, succeeded

TINY = """\
stages:
  synth:
    run: synth
    params: {identities: 2, images_per_identity: 2, size: 64, seed: 0}
    outs: {out_dir: out/data}
  prepare:
    run: prepare
    deps: {dataset_dir: "${stages.synth.outs.out_dir}"}
    params: {workers: 1}
    outs: {output: out/info.csv}
  split:
    run: split
    deps: {dataset_info: "${stages.prepare.outs.output}"}
    params: {mode: classes, test_fraction: 0.5, seed: 0}
    outs: {output: out/split.csv}
"""
# 9 ** 9 = 387 million strings from 100 bytes, if anything walks it
BOMB = "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9) if a else ', '.join(['x'] * 9)}]\n"
    for a, b in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
)
MARKER = "pwned"
CODE = f'!!python/object/apply:os.system ["touch {MARKER}"]'


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with p.yaml (synth → prepare → split) run once to the end."""
    root = tmp_path_factory.mktemp("hostile_pipeline")
    (root / "p.yaml").write_text(TINY, encoding="utf-8")
    succeeded(fmlkit("-q", "run", "p.yaml", cwd=root))
    return root


@pytest.fixture
def project(built: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of the built pipeline folder."""
    copy = tmp_path / "project"
    shutil.copytree(built, copy, symlinks=True)
    yield copy


def _state(project: Path) -> dict[str, bytes | str]:
    """The lock file's bytes and every entry under out/: a link's target, a file's bytes."""
    found: dict[str, bytes | str] = {
        str(p.relative_to(project)): str(p.readlink()) if p.is_symlink() else p.read_bytes()
        for p in (project / "out").iterdir()
    }
    return {**found, "p.lock": (project / "p.lock").read_bytes()}


def _pipeline(tmp_path: Path, text: str) -> Path:
    (tmp_path / "p.yaml").write_text(text, encoding="utf-8")
    return tmp_path / "p.yaml"


def _refused(result: Result, says: list[str]) -> str:
    """`refused`, with ``says`` in its message: the ``Error:`` line and the problems listed
    under it (a pipeline file's problems are listed one a line). Returns the message."""
    refused(result)
    message = result.stderr[result.stderr.index("Error:") :]
    for word in says:
        assert word.lower() in message.lower(), f"{word!r} not in\n{message}"
    return message


def _nothing_made(folder: Path) -> None:
    """No lock, no store, no outputs, and no code ran."""
    made = sorted(p.name for p in folder.iterdir() if p.name not in ("p.yaml", "src", "link"))
    assert made == [], f"a refused pipeline left {made}"


# --- pipeline files ----------------------------------------------------------------------

SPLIT = "    run: split\n    deps: {dataset_info: in.csv}\n"
PIPELINE_FILES = {
    "bomb-as-stages": (BOMB + "stages: *i\n", ["p.yaml"]),
    "bomb-in-params": (
        BOMB + "stages:\n  s:\n" + SPLIT + "    params: {seed: *i}\n    outs: {output: o.csv}\n",
        ["p.yaml"],  # refused by the YAML reader, or by the key's check: bounded either way
    ),
    "python-tag": (
        f"stages:\n  s:\n    run: {CODE}\n    outs: {{output: o.csv}}\n",
        ["p.yaml", "python/object/apply"],
    ),
    "python-tag-in-params": (
        f"stages:\n  s:\n{SPLIT}    params: {{seed: {CODE}}}\n    outs: {{output: o.csv}}\n",
        ["p.yaml", "python/object/apply"],
    ),
    "not-a-mapping": ("- just\n- a list\n", ["(top)", "expected a mapping"]),
    "empty": ("", ["(top)", "expected a mapping"]),
    "cycle": (
        "stages:\n"
        "  a:\n    run: split\n    deps: {dataset_info: b.csv}\n    outs: {output: a.csv}\n"
        "  b:\n    run: split\n    deps: {dataset_info: a.csv}\n    outs: {output: b.csv}\n",
        ["cycle"],
    ),
    "unknown-top-key": (
        f"stagez: {{}}\nstages:\n  s:\n{SPLIT}    outs: {{output: o.csv}}\n",
        ["stagez: unknown key"],
    ),
    "unknown-section": (
        f"stages:\n  s:\n{SPLIT}    outs: {{output: o.csv}}\n    param: {{seed: 1}}\n",
        ["stages.s.param: unknown key"],
    ),
    "unknown-param": (
        f"stages:\n  s:\n{SPLIT}    params: {{sed: 1}}\n    outs: {{output: o.csv}}\n",
        ["stages.s.params.sed", "did you mean 'seed'"],
    ),
    "reference-to-nothing": (
        'stages:\n  s:\n    run: split\n    deps: {dataset_info: "${stages.x.outs.output}"}\n'
        "    outs: {output: o.csv}\n",
        ["stages.s.deps.dataset_info", "no stage 'x'"],
    ),
    "output-root": (
        f"stages:\n  s:\n{SPLIT}    outs: {{output: /}}\n",
        ["stages.s.outs.output", "holds the artifact store"],
    ),
    "output-parent": (
        f"stages:\n  s:\n{SPLIT}    outs: {{output: ..}}\n",
        ["stages.s.outs.output", "holds the artifact store"],
    ),
    "output-here": (
        f"stages:\n  s:\n{SPLIT}    outs: {{output: .}}\n",
        ["stages.s.outs.output", "the pipeline file"],
    ),
    "output-is-the-pipeline": (
        f"stages:\n  s:\n{SPLIT}    outs: {{output: p.yaml}}\n",
        ["stages.s.outs.output", "the pipeline file p"],
    ),
    "output-is-the-lock": (
        f"stages:\n  s:\n{SPLIT}    outs: {{output: p.lock}}\n",
        ["stages.s.outs.output", "lock file"],
    ),
    "output-inside-a-source": (
        "stages:\n  s:\n    run: prepare\n    deps: {dataset_dir: src}\n"
        "    outs: {output: src/info.csv}\n",
        ["stages.s.outs.output", "inside src", "stages.s.deps.dataset_dir"],
    ),
    "output-inside-another-stages-source": (
        "stages:\n  a:\n    run: prepare\n    deps: {dataset_dir: src}\n"
        "    outs: {output: info.csv}\n"
        f"  b:\n{SPLIT}    outs: {{output: src/a/split.csv}}\n",
        ["stages.b.outs.output", "inside src", "stages.a.deps.dataset_dir"],
    ),
    "outputs-meet-through-a-linked-folder": (
        f"stages:\n  a:\n{SPLIT}    outs: {{output: src/a/o.csv}}\n"
        f"  b:\n{SPLIT}    outs: {{output: link/o.csv}}\n",
        ["stages.b.outs.output", "overlaps stages.a.outs.output"],
    ),
}


@pytest.mark.parametrize("command", ["run", "status"])
@pytest.mark.parametrize("case", list(PIPELINE_FILES))
def test_hostile_pipeline_file_is_refused_before_anything_runs(
    tmp_path: Path, case: str, command: str
) -> None:
    text, says = PIPELINE_FILES[case]
    (tmp_path / "src" / "a").mkdir(parents=True)
    (tmp_path / "link").symlink_to("src/a")
    _pipeline(tmp_path, text)
    started = time.monotonic()
    result = fmlkit(command, "p.yaml", cwd=tmp_path)
    assert time.monotonic() - started < 60, "a bomb was expanded"
    _refused(result, says)
    _nothing_made(tmp_path)


def test_pipeline_file_not_utf8_is_refused(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_bytes(b"stages:\n  s\xff\xfe: {}\n")
    refused(fmlkit("run", "p.yaml", cwd=tmp_path), says=["p.yaml", "not UTF-8"])
    _nothing_made(tmp_path)


def test_pipeline_dep_that_nothing_makes_is_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    _pipeline(tmp_path, TINY.replace('"${stages.prepare.outs.output}"', "nowhere.csv"))
    _refused(fmlkit("run", "p.yaml", cwd=tmp_path), ["stages.split.deps", "nowhere.csv"])
    _nothing_made(tmp_path)


# --- lock files ----------------------------------------------------------------------------

ENTRY = (
    "{run: split, params: {}, deps: {}, outs: {output: {path: out/split.csv, version: v}}, "
    "fmlkit_version: '0', started: x, duration_s: 1}"
)
ENTRY_IS = "schema: 1\nstages:\n  split: "
LOCK_FILES = {
    "truncated": None,  # the real lock cut inside its first entry
    "not-yaml": "schema: 1\nstages: [unclosed\n",
    "python-tag": f"schema: 1\nstages:\n  split: {CODE}\n",
    "bomb": BOMB + "schema: 1\nstages: *i\n",
    "bomb-in-an-entry": BOMB + ENTRY_IS + ENTRY.replace("{}", "*i", 1),
    "not-a-mapping": "[1, 2, 3]\n",
    "stages-a-list": "schema: 1\nstages: [split]\n",
    "out-not-a-mapping": ENTRY_IS + ENTRY.replace("{path: out/split.csv, version: v}", "3"),
    "dep-not-a-mapping": ENTRY_IS + ENTRY.replace("deps: {}", "deps: {dataset_info: 5}"),
    "started-not-text": ENTRY_IS + ENTRY.replace("started: x", "started: [1]"),
    "duration-not-a-number": ENTRY_IS + ENTRY.replace("duration_s: 1", "duration_s: soon"),
}


@pytest.mark.parametrize("command", [("status", "p.yaml"), ("run", "p.yaml")], ids=str)
@pytest.mark.parametrize("case", list(LOCK_FILES))
def test_hostile_lock_file_is_refused_and_nothing_changes(
    project: Path, case: str, command: tuple[str, ...]
) -> None:
    lock = project / "p.lock"
    text = LOCK_FILES[case]
    if text is None:  # cut inside the first entry
        whole = lock.read_text(encoding="utf-8")
        lock.write_text(whole[: whole.index("fmlkit_version")], encoding="utf-8")
    else:
        lock.write_text(text, encoding="utf-8")
    before = _state(project)
    started = time.monotonic()
    result = fmlkit(*command, cwd=project)
    assert time.monotonic() - started < 60, "a bomb was expanded"
    _refused(result, ["p.lock", "delete p.lock"])
    assert _state(project) == before
    assert not (project / MARKER).exists()


def test_lock_file_not_utf8_is_refused(project: Path) -> None:
    (project / "p.lock").write_bytes(b"schema: 1\nstages:\n  split\xff: {}\n")
    refused(fmlkit("status", "p.yaml", cwd=project), says=["p.lock", "not UTF-8"])


# --- outputs the user owns -------------------------------------------------------------------


@pytest.mark.parametrize("dangling", [False, True], ids=["link", "dangling-link"])
def test_run_keeps_an_output_path_that_is_the_users_own_link(
    tmp_path: Path, dangling: bool
) -> None:
    _pipeline(tmp_path, TINY)
    (tmp_path / "out").mkdir()
    mine = tmp_path / "mine.csv"
    if not dangling:
        mine.write_text("my own table\n", encoding="utf-8")
    (tmp_path / "out" / "info.csv").symlink_to("../mine.csv")
    line = _refused(
        fmlkit("run", "p.yaml", cwd=tmp_path),
        ["stages.prepare.outs.output", "out/info.csv", "a link to", "mine.csv"],
    )
    assert "move it away" in line
    assert str((tmp_path / "out" / "info.csv").readlink()) == "../mine.csv"
    assert mine.exists() != dangling
    assert not dangling or not mine.exists()
    assert dangling or mine.read_text(encoding="utf-8") == "my own table\n"
    assert not (tmp_path / "p.lock").exists()


def test_run_replaces_a_link_into_the_store_made_by_hand(project: Path) -> None:
    """The documented `ln -sfn` to a version folder is the pipeline's own kind of link."""
    info = project / "out" / "info.csv"
    target = info.readlink()
    info.unlink()
    info.symlink_to(target)  # the same link, made by hand
    succeeded(fmlkit("run", "p.yaml", cwd=project))
    assert info.readlink() == target


# --- restore -------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["deleted", "not-yaml", "no-records"])
def test_restore_of_a_version_without_provenance_changes_nothing(
    project: Path, damage: str
) -> None:
    folder = next(p for p in (project / "artifacts" / "p" / "prepare").iterdir())
    record = folder / PROVENANCE
    if damage == "deleted":
        record.unlink()
    else:
        record.write_text("records: [" if damage == "not-yaml" else "records: 3\n", "utf-8")
    before = _state(project)
    line = refused(
        fmlkit("artifacts", "p.yaml", "--restore", "prepare", folder.name[:6], cwd=project),
        says=[folder.name, "no readable record", "nothing was changed"],
    )
    assert "lock entry updated" not in line
    assert _state(project) == before
    listing = fmlkit("artifacts", "p.yaml", cwd=project)  # the listing still shows it
    succeeded(listing)
    assert f"* {folder.name}  (no provenance record)" in listing.stdout


def test_restore_refuses_an_output_path_that_is_the_users_own(project: Path) -> None:
    folder = next(p for p in (project / "artifacts" / "p" / "split").iterdir())
    (project / "out" / "split.csv").unlink()
    (project / "out" / "split.csv").write_text("mine\n", encoding="utf-8")
    before = _state(project)
    refused(
        fmlkit("artifacts", "p.yaml", "--restore", "split", folder.name, cwd=project),
        says=["out/split.csv", "a file", "nothing was changed"],
    )
    assert _state(project) == before


# --- the hash cache ----------------------------------------------------------------------------


def test_status_while_a_run_holds_the_hash_cache(project: Path) -> None:
    """A long stage of a running `fmlkit run` holds the cache's write lock (here: held the
    same way, by SQLite, in this process): status still answers, and truthfully."""
    cache = sqlite3.connect(project / "artifacts" / "p" / ".hashes.sqlite", timeout=0)
    try:
        cache.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        result = fmlkit("status", "p.yaml", cwd=project)
        assert time.monotonic() - started < 30
    finally:
        cache.rollback()
        cache.close()
    succeeded(result)
    assert [line.split()[1] for line in result.stdout.splitlines()] == ["up-to-date"] * 3
    warnings = [line for line in result.stderr.splitlines() if line]
    assert len(warnings) == 1 and "hash cache" in warnings[0] and "not used" in warnings[0]


def test_a_damaged_hash_cache_is_read_around_and_rebuilt(project: Path) -> None:
    cache = project / "artifacts" / "p" / ".hashes.sqlite"
    cache.write_bytes(b"not a database at all, " * 100)
    status = fmlkit("status", "p.yaml", cwd=project)
    succeeded(status)
    assert [line.split()[1] for line in status.stdout.splitlines()] == ["up-to-date"] * 3
    assert "hash cache" in status.stderr
    run = fmlkit("run", "p.yaml", cwd=project)
    succeeded(run)
    assert "3 skipped" in run.stdout
    db = sqlite3.connect(cache)  # a working cache again
    try:
        assert db.execute("SELECT count(*) FROM file_hashes").fetchone()[0] >= 0
    finally:
        db.close()


def test_run_writes_a_damaged_provenance_anew(project: Path) -> None:
    folder = (project / "out" / "split.csv").resolve().parent.parent
    (folder / PROVENANCE).write_text("records: [", encoding="utf-8")
    result = fmlkit("run", "p.yaml", "--force", "split", cwd=project)
    succeeded(result)
    assert "provenance.yaml" in result.stderr  # a warning names it
    listing = fmlkit("artifacts", "p.yaml", cwd=project)
    succeeded(listing)
    assert f"* {folder.name}  20" in listing.stdout  # a record again: its start time


# --- runs: the table reads whatever the store holds ------------------------------------------

EVALUATE = """\
stages:
  evaluate:
    run: evaluate
    deps: {embeddings: emb.parquet, pairs: [pairs.csv]}
    outs: {output: out/eval}
"""
RECORD = """\
records:
- run: evaluate
  params: {}
  deps:
    embeddings: {path: emb.parquet, version: 'file:00'}
    pairs: {path: [pairs.csv], version: ['file:11']}
  outs: {output: {path: out/eval, version: 'dir:22'}}
  fmlkit_version: 0.1.0
  started: '2025-01-01T00:00:0%d.000Z'
  duration_s: 1.0
"""
DEEP = 100_000
# metrics.json as found in a version folder → the metrics the row keeps (None: no file)
STORED_METRICS: dict[str, tuple[str | bytes | None, dict[str, float]]] = {
    "not-json": ("{", {}),
    "a-list": ("[1, 2]", {}),
    "not-utf8": (b"\xff\xfe{}", {}),
    "nested-too-deep": ("[" * DEEP + "]" * DEEP, {}),
    "nan-and-text": ('{"b": {"accuracy": NaN, "auc": "high", "eer": 0.1}}', {}),
    "one-good-metric": ('{"b": {"accuracy": true, "auc": 0.75}, "c": 3}', {"auc": 0.75}),
    "missing": (None, {}),
}


@pytest.fixture
def forged(tmp_path: Path) -> Path:
    """A pipeline with one evaluate stage whose store holds a version per `STORED_METRICS`
    case (named by the case), each with a record of deps that no stage made, and one version
    whose provenance is damaged."""
    (tmp_path / "e.yaml").write_text(EVALUATE, encoding="utf-8")
    store = tmp_path / "artifacts/e/evaluate"
    for i, (name, (metrics, _)) in enumerate(STORED_METRICS.items()):
        (store / name / "output/eval").mkdir(parents=True)
        (store / name / PROVENANCE).write_text(RECORD % i, encoding="utf-8")
        path = store / name / "output/eval/metrics.json"
        if isinstance(metrics, str):
            path.write_text(metrics, encoding="utf-8")
        elif metrics is not None:
            path.write_bytes(metrics)
    (store / "damaged/output/eval").mkdir(parents=True)
    (store / "damaged" / PROVENANCE).write_text("records: [", encoding="utf-8")
    return tmp_path


def test_runs_shows_a_row_for_every_version_whatever_its_files_hold(forged: Path) -> None:
    before = sorted((str(p), p.stat().st_mtime_ns) for p in forged.rglob("*"))
    result = fmlkit("runs", "e.yaml", "--json", cwd=forged)
    succeeded(result)
    rows = {r["version"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {*STORED_METRICS, "damaged"}
    for name, (stored, kept) in STORED_METRICS.items():
        assert rows[name]["metrics"] == kept, name
        assert rows[name]["train"] is None and rows[name]["notes"], name
        assert "train version it evaluated was not found" in rows[name]["notes"][-1]
        if stored is not None and not kept:
            assert "metrics.json" in rows[name]["notes"][0], name
    assert "no metrics.json" in rows["missing"]["notes"][0]
    assert "no readable provenance" in " ".join(rows["damaged"]["notes"])
    assert "provenance.yaml" in result.stderr  # one warning names the damaged record
    text = fmlkit("runs", "e.yaml", cwd=forged)
    succeeded(text)
    assert len(text.stdout.splitlines()) == 1 + len(rows)
    assert sorted((str(p), p.stat().st_mtime_ns) for p in forged.rglob("*")) == before  # read only


def test_runs_refuses_what_it_cannot_compare(forged: Path, built: Path) -> None:
    refused(fmlkit("runs", "nope", cwd=forged), says=["pipeline nope not found"])
    refused(fmlkit("runs", "p.yaml", cwd=built), says=["p.yaml", "no evaluate stage"])
    line = refused(fmlkit("runs", "e.yaml", "--sort", "acc", cwd=forged), code=2)
    assert "--sort acc names no column" in line and "auc" in line
    refused(fmlkit("runs", "e.yaml", "--json", "--csv", cwd=forged), code=2, says="exclude")
