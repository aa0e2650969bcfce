"""The evaluation report: metrics.json structure, metrics.md numbers, real PNG plots, atomicity."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmlkit.errors import InputError
from fmlkit.eval import report
from fmlkit.eval.report import roc_figure, scores_figure, write_report
from fmlkit.eval.verification import PairScores

RETRIEVAL = {
    "precision_at_1": 0.9125,
    "r_precision": 0.75,
    "map_at_r": np.float64(0.6875),
    "recall_at_k": {"1": 0.9125, "5": 0.96, "10": 0.98},
    "queries": np.int64(160),
    "excluded": 2,
}


def _scores(n: int = 400, *, gap: float = 0.5, seed: int = 0, **result: object) -> PairScores:
    """``n`` pairs, genuine similarities ``gap`` above the imposters', with a hand-made result."""
    rng = np.random.default_rng(seed)
    same = np.arange(n) % 2 == 0
    sims = np.clip(np.where(same, 0.1 + gap, 0.1) + rng.normal(0, 0.15, n), -1, 1)
    base: dict[str, object] = {
        "accuracy": 0.9953,
        "accuracy_std": 0.0032,
        "threshold": 1.345,
        "val_at_far_1e-3": 0.9871,
        "auc": 0.99874,
        "eer": 0.0123,
        "tar_at_far": {"1e-1": 0.999, "1e-2": 0.995, "1e-3": 0.9876},
        "pairs": n,
    }
    return PairScores(similarities=sims, same=same, result={**base, **result})


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.width >= 400 and img.height >= 300
        return np.asarray(img.convert("RGB"))


def test_write_report_metrics_json_round_trips(tmp_path: Path) -> None:
    lfw = _scores(pairs=np.int64(400), auc=np.float64(0.99874))
    cfp = _scores(seed=1, accuracy=0.9)
    out = write_report(
        tmp_path / "out",
        verification={"lfw": lfw, "cfp_fp": cfp},
        retrieval=RETRIEVAL,
        notes={"lfw": {"skipped_missing": 3}},
    )
    text = (out / "metrics.json").read_text(encoding="utf-8")
    got = json.loads(text)
    assert list(got) == ["lfw", "cfp_fp", "retrieval"]
    assert got["lfw"] == {**_scores().result, "skipped_missing": 3}
    assert list(got["lfw"])[-1] == "skipped_missing"
    assert got["cfp_fp"]["accuracy"] == 0.9 and "skipped_missing" not in got["cfp_fp"]
    assert got["retrieval"] == {**RETRIEVAL, "map_at_r": 0.6875, "queries": 160}
    assert text.startswith('{\n  "lfw": {\n    "accuracy": 0.9953,') and text.endswith("}\n")
    assert sorted(p.name for p in out.iterdir()) == [
        "metrics.json",
        "metrics.md",
        "roc.png",
        "scores.png",
    ]


def test_write_report_markdown_contains_the_numbers(tmp_path: Path) -> None:
    out = write_report(
        tmp_path / "out",
        verification={"lfw": _scores(), "agedb_30": _scores(seed=2, accuracy=0.97)},
        retrieval=RETRIEVAL,
        notes={"lfw": {"skipped_missing": 3}},
    )
    md = (out / "metrics.md").read_text(encoding="utf-8")
    lfw = next(line for line in md.splitlines() if line.startswith("| lfw |"))
    cells = [c.strip() for c in lfw.strip("|").split("|")]
    assert cells == ["lfw", "99.53 ± 0.32", "1.345", "98.71", "0.9987", "1.23", "98.76", "—", "400"]
    assert "| agedb_30 | 97.00 ± 0.32 |" in md
    assert "population std" in md and "| ---: |" in md
    assert "| 160 | 2 | 91.25 | 75.00 | 68.75 | 91.25 | 96.00 | 98.00 |" in md
    assert "Recall@10 (%)" in md
    assert "- lfw: skipped_missing = 3" in md


def test_write_report_retrieval_only_writes_no_plots(tmp_path: Path) -> None:
    out = write_report(tmp_path / "out", verification={}, retrieval=RETRIEVAL)
    md = (out / "metrics.md").read_text(encoding="utf-8")
    assert "## Verification" not in md and "## Retrieval" in md
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "metrics.md"]


def test_write_report_markdown_escapes_pipes_in_names(tmp_path: Path) -> None:
    out = write_report(tmp_path / "out", verification={"a|b": _scores()})
    assert "| a\\|b | 99.53 ± 0.32 |" in (out / "metrics.md").read_text(encoding="utf-8")


def test_write_report_plots_are_real_pngs_that_follow_the_data(tmp_path: Path) -> None:
    first = write_report(tmp_path / "a", verification={"lfw": _scores(gap=0.5)})
    second = write_report(tmp_path / "b", verification={"lfw": _scores(gap=0.2, threshold=0.8)})
    for name in ("roc.png", "scores.png"):
        a, b = _png(first / name), _png(second / name)
        assert a.shape == b.shape and not np.array_equal(a, b)
        assert len(np.unique(a.reshape(-1, 3), axis=0)) > 10  # not a blank canvas


@pytest.mark.parametrize(
    ("result", "where"),
    [
        ({"auc": math.nan}, "lfw.auc"),
        ({"eer": np.float64(np.inf)}, "lfw.eer"),
        ({"tar_at_far": {"1e-1": math.nan}}, "lfw.tar_at_far.1e-1"),
    ],
)
def test_write_report_refuses_nan(tmp_path: Path, result: dict[str, object], where: str) -> None:
    with pytest.raises(InputError, match=f"the metric {where} is"):
        write_report(tmp_path / "out", verification={"lfw": _scores(**result)})
    assert list(tmp_path.iterdir()) == []


def test_write_report_refuses_nan_in_retrieval_and_notes(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"retrieval\.map_at_r"):
        write_report(tmp_path, verification={}, retrieval={**RETRIEVAL, "map_at_r": math.nan})
    with pytest.raises(InputError, match=r"lfw\.x"):
        write_report(tmp_path, verification={"lfw": _scores()}, notes={"lfw": {"x": math.nan}})


def test_write_report_refuses_bad_arguments(tmp_path: Path) -> None:
    lfw = _scores()
    with pytest.raises(InputError, match="nothing to report"):
        write_report(tmp_path / "out", verification={})
    with pytest.raises(InputError, match=r"unknown benchmarks \['cfp'\]"):
        write_report(tmp_path / "out", verification={"lfw": lfw}, notes={"cfp": {"n": 1}})
    with pytest.raises(InputError, match=r"overwrite its metrics \['pairs'\]"):
        write_report(tmp_path / "out", verification={"lfw": lfw}, notes={"lfw": {"pairs": 1}})
    with pytest.raises(InputError, match="clashes"):
        write_report(tmp_path / "out", verification={"retrieval": lfw}, retrieval=RETRIEVAL)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        write_report(tmp_path / "file", verification={"lfw": lfw})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_roc_figure_has_a_curve_per_benchmark() -> None:
    names = ["lfw", "cfp_fp", "agedb_30"]
    fig = roc_figure({n: _scores(seed=i, auc=0.9 + i / 100) for i, n in enumerate(names)})
    (ax,) = fig.axes
    assert len(ax.get_lines()) == 3
    (legend_box,) = fig.legends
    legend = [t.get_text() for t in legend_box.get_texts()]
    assert legend == ["lfw (AUC 0.9000)", "cfp_fp (AUC 0.9100)", "agedb_30 (AUC 0.9200)"]
    assert ax.get_xscale() == "log" and ax.get_xlim() == pytest.approx((1e-6, 1.0))
    far, tar = ax.get_lines()[1].get_data()
    expected_far, expected_tar = report.roc_corners(*_scores(seed=1).roc())
    assert len(expected_far) < len(_scores(seed=1).roc()[0])
    np.testing.assert_array_equal(far, expected_far)
    np.testing.assert_array_equal(tar, expected_tar)


def test_roc_corners_keeps_only_the_turns_of_the_curve() -> None:
    far = np.array([0.0, 0.0, 0.0, 0.1, 0.2, 0.2, 0.5, 1.0])
    tar = np.array([0.0, 0.5, 0.6, 0.6, 0.6, 0.9, 0.95, 1.0])
    got_far, got_tar = report.roc_corners(far, tar)
    np.testing.assert_array_equal(got_far, [0.0, 0.0, 0.2, 0.2, 0.5, 1.0])
    np.testing.assert_array_equal(got_tar, [0.0, 0.6, 0.6, 0.9, 0.95, 1.0])


def test_scores_figure_draws_the_threshold_as_a_cosine() -> None:
    fig = scores_figure({"lfw": _scores(threshold=0.8), "cfp": _scores(seed=1, threshold=1.2)})
    shown = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in shown] == ["lfw: accuracy 99.53%", "cfp: accuracy 99.53%"]
    for ax, cosine in zip(shown, (0.6, 0.4), strict=True):
        (line,) = ax.get_lines()
        assert line.get_xdata()[0] == pytest.approx(cosine)
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend == ["genuine (200)", "imposter (200)", f"threshold (cos {cosine:.3f})"]
        assert len(ax.patches) == 2 * 60  # a genuine and an imposter histogram


def test_scores_figure_lays_out_a_grid() -> None:
    fig = scores_figure({f"b{i}": _scores(seed=i) for i in range(4)})
    assert len(fig.axes) == 6 and sum(ax.axison for ax in fig.axes) == 4


def test_write_report_keeps_user_files_in_an_existing_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "metrics.json").write_text("{}")
    write_report(out, verification={"lfw": _scores()})
    assert (out / "notes.txt").read_text() == "mine"
    assert "lfw" in json.loads((out / "metrics.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == [
        "metrics.json",
        "metrics.md",
        "notes.txt",
        "roc.png",
        "scores.png",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_write_report_leaves_no_folder_when_writing_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[str] = []

    def failing_write(path: Path, data: bytes) -> None:
        if path.name == "metrics.json":
            raise OSError("disk full")
        path.write_bytes(data)
        written.append(path.name)

    monkeypatch.setattr(report, "atomic_write_bytes", failing_write)
    with pytest.raises(OSError, match="disk full"):
        write_report(tmp_path / "out", verification={"lfw": _scores()})
    assert written == ["metrics.md", "roc.png", "scores.png"]  # metrics.json comes last
    assert list(tmp_path.iterdir()) == []


def test_write_report_keeps_a_folder_created_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    real = report.temp_sibling

    def racing(path: Path) -> Path:
        out.mkdir()
        (out / "theirs.txt").write_text("kept")
        return real(path)

    monkeypatch.setattr(report, "temp_sibling", racing)
    write_report(out, verification={}, retrieval=RETRIEVAL)
    assert (out / "theirs.txt").read_text() == "kept"
    assert json.loads((out / "metrics.json").read_text())["retrieval"]["queries"] == 160
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
