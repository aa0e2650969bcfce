"""The evaluation report: ``metrics.json``, ``metrics.md``, ``roc.png`` and ``scores.png``.

``metrics.json`` maps each benchmark (a pairs file's stem, or ``retrieval``) to its metrics;
``metrics.md`` shows the same numbers as GitHub-readable tables; ``roc.png`` draws TAR against
FAR on a log axis, one curve per benchmark; ``scores.png`` shows, per benchmark, histograms of
the cosine similarities of genuine and imposter pairs with the decision threshold; an IJB
benchmark also writes every pair's score as ``ijbc.npy`` (or ``ijbb.npy``), as insightface's
eval_ijbc.py saves them.

Writing follows "nothing is lost, nothing looks complete that is not". Every file is rendered in
memory first (a NaN, an unknown note or a plotting error stops before the disk is touched).
A new ``OUT_DIR`` is built as a hidden sibling folder and renamed into place, so a killed
evaluation leaves no ``OUT_DIR`` at all. An existing ``OUT_DIR`` may hold the user's own files:
it is never deleted or renamed; each of our files replaces its old version atomically (temporary
name beside it, then rename), ``metrics.json`` last. A kill there leaves each file either old or
new, never truncated.
"""

from __future__ import annotations

import html
import io
import json
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmlkit.errors import InputError
from fmlkit.eval.templates import IJB_FARS
from fmlkit.io import atomic_write_bytes, committed_together, temp_sibling

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from fmlkit.eval.ijb import IjbResult
    from fmlkit.eval.verification import PairScores

METRICS_JSON = "metrics.json"
METRICS_MD = "metrics.md"
ROC_PNG = "roc.png"
SCORES_PNG = "scores.png"
RETRIEVAL = "retrieval"  # the benchmark name of the retrieval metrics
IDENTIFICATION = "identification"  # the benchmark name of --gallery/--probes' 1:N metrics
IJB_SCORES = ("ijbb.npy", "ijbc.npy")  # each IJB pair's score, as insightface saves them
REPORT_FILES = (METRICS_JSON, METRICS_MD, ROC_PNG, SCORES_PNG, *IJB_SCORES)  # what it writes
FAR_RANGE = (1e-6, 1.0)  # the ROC plot's FAR axis
MISSING = "—"  # a table cell whose metric was not computed
VERIFICATION_HEADER = [
    "Benchmark",
    "Accuracy (%) ± population std",
    "Threshold",
    "VAL@FAR=1e-3 (%)",
    "AUC",
    "EER (%)",
    "TAR@FAR=1e-3 (%)",
    "TAR@FAR=1e-4 (%)",
    "Pairs",
]
VERIFICATION_NOTE = (
    "Accuracy: mean ± population standard deviation of the 10 fold accuracies (insightface's "
    "protocol; FaceX-Zoo prints the standard error instead). Threshold: squared L2 distance "
    "between L2-normalised embeddings, mean of the 10 fold thresholds (cosine = 1 − t/2); "
    f"a pair is the same identity below it. {MISSING}: not enough imposter pairs for that FAR."
)


def write_report(
    out_dir: str | os.PathLike[str],
    *,
    verification: Mapping[str, PairScores],
    retrieval: Mapping[str, object] | None = None,
    notes: Mapping[str, Mapping[str, object]] | None = None,
    templates: Mapping[str, IjbResult] | None = None,
    identification: Mapping[str, Mapping[str, object]] | None = None,
) -> Path:
    """Write the evaluation report into ``out_dir`` (created if absent) and return its path.

    ``roc.png`` is written when there is a pair list or an IJB benchmark, ``scores.png`` when
    there is a pair list. Other files in an existing ``out_dir`` are kept (see the module
    docstring).

    Args:
        out_dir: the report folder.
        verification: scored pairs per benchmark name (the pairs file's stem), in table order.
        retrieval: the retrieval metrics, reported under ``retrieval``.
        notes: extra values per benchmark name merged into its metrics, e.g.
            ``{"lfw": {"skipped_missing": 3}}``; also listed under the tables.
        templates: IJB benchmarks scored (``ijbc``: template-based 1:1 verification).
        identification: 1:N metrics per benchmark name (``identification``, ``ijbc_1n``).

    Raises:
        InputError: nothing to report, a NaN or infinite metric, a note for an unknown
            benchmark or one that would overwrite a metric, or ``out_dir`` is a file or the
            file system's root.
    """
    out = check_report_folder(out_dir)
    templates, identification = templates or {}, identification or {}
    metrics = collect_metrics(verification=verification, retrieval=retrieval, notes=notes,
                              templates=templates, identification=identification)  # fmt: skip
    markdown = render_markdown(metrics, notes=notes or {}, templates=list(templates),
                               identification=list(identification))  # fmt: skip
    files = {METRICS_MD: markdown.encode("utf-8")}
    if verification or templates:
        files[ROC_PNG] = png_bytes(roc_figure(verification, templates))
    if verification:
        files[SCORES_PNG] = png_bytes(scores_figure(verification))
    for name, result in templates.items():
        files[f"{name}.npy"] = _npy_bytes(result.scores)
    files[METRICS_JSON] = render_json(metrics).encode("utf-8")  # last: marks a complete report
    _write_files(out, files)
    return out


def check_report_folder(out_dir: str | os.PathLike[str]) -> Path:
    """``out_dir`` as a `Path`, once sure it can be the report folder.

    Raises:
        InputError: ``out_dir`` is a file, or the file system's root.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"the report folder {out} is a file; expected a folder: choose another -o")
    if out.resolve().parent == out.resolve():
        raise InputError(
            f"the report folder {out} is the file system's root; expected a folder of its own "
            "(e.g. -o eval/): choose another -o"
        )
    return out


def collect_metrics(
    *,
    verification: Mapping[str, PairScores],
    retrieval: Mapping[str, object] | None,
    notes: Mapping[str, Mapping[str, object]] | None,
    templates: Mapping[str, IjbResult] | None = None,
    identification: Mapping[str, Mapping[str, object]] | None = None,
) -> dict[str, dict[str, Any]]:
    """``{benchmark: {metric: value}}`` with plain JSON values: pair lists, IJB, 1:N, then
    retrieval.

    Raises:
        InputError: as `write_report`.
    """
    notes, templates, identification = notes or {}, templates or {}, identification or {}
    sources: dict[str, Mapping[str, object]] = {n: s.result for n, s in verification.items()}
    others: list[tuple[str, Mapping[str, object]]] = [(n, r.result) for n, r in templates.items()]
    others += identification.items()
    if retrieval is not None:
        others.append((RETRIEVAL, retrieval))
    for name, values in others:
        if name in sources:
            raise InputError(
                f"a pairs file named {name!r} clashes with the {name} metrics' name; rename "
                "the pairs file"
            )
        sources[name] = values
    names = list(sources)
    if not names:
        raise InputError(
            "nothing to report: expected verification pairs, IJB, identification or "
            "retrieval metrics"
        )
    unknown = sorted(set(notes) - set(names))
    if unknown:
        raise InputError(f"notes for unknown benchmarks {unknown}; expected some of {names}")
    metrics: dict[str, dict[str, Any]] = {}
    for name in names:
        values = dict(sources[name])
        extra = notes.get(name, {})
        clash = sorted(set(values) & set(extra))
        if clash:
            raise InputError(f"notes for {name} would overwrite its metrics {clash}")
        metrics[name] = _plain({**values, **extra}, where=name)
    return metrics


def _plain(value: object, *, where: str) -> Any:
    """``value`` as plain JSON types (NumPy scalars and arrays converted); NaN/inf refused."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v, where=f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v, where=f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return _plain(value.item(), where=where)
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(
            f"the metric {where} is {value}; expected a finite number. A pair list with only "
            "genuine or only imposter pairs, or NaN embeddings, give no AUC/EER: check the "
            "pairs and embeddings"
        )
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot write {type(value).__name__} at {where} to {METRICS_JSON}")


def render_json(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    """``metrics`` as indented JSON in the given key order; NaN refused by the encoder too."""
    return json.dumps(metrics, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def _cell(value: object, *, percent: bool = False, digits: int = 2) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return MISSING
    if isinstance(value, int) and not percent:
        return str(value)
    return f"{value * 100 if percent else value:.{digits}f}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(_text(c).replace("|", "\\|") for c in cells) + " |"


def _text(text: str) -> str:
    """``text`` (a benchmark's name: a file's stem) shown as itself in Markdown: HTML markup
    escaped (``<img onerror=…>`` is text, never a tag), brackets and backticks too (no link,
    image or code span), line breaks as spaces."""
    plain = html.escape(" ".join(text.splitlines()), quote=False)
    return plain.translate(_MARKDOWN)


_MARKDOWN = str.maketrans({c: "\\" + c for c in "\\[]`"})


def _label(text: str) -> str:
    """``text`` shown as itself in a plot: dollar signs escaped (matplotlib would read
    ``$…$`` as mathtext, and fail on a name like ``a$\\frac{b$``)."""
    return text.replace("$", r"\$")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    align = ["---", *("---:" for _ in header[1:])]
    return [_row(header), "| " + " | ".join(align) + " |", *(_row(r) for r in rows)]


def _verification_rows(
    metrics: Mapping[str, Mapping[str, Any]], others: set[str]
) -> list[list[str]]:
    rows = []
    for name, m in metrics.items():
        if name == RETRIEVAL or name in others:
            continue
        tar = m.get("tar_at_far") or {}
        accuracy = f"{_cell(m.get('accuracy'), percent=True)} ± "
        accuracy += _cell(m.get("accuracy_std"), percent=True)
        rows.append(
            [
                name,
                accuracy,
                _cell(m.get("threshold"), digits=3),
                _cell(m.get("val_at_far_1e-3"), percent=True),
                _cell(m.get("auc"), digits=4),
                _cell(m.get("eer"), percent=True),
                _cell(tar.get("1e-3"), percent=True),
                _cell(tar.get("1e-4"), percent=True),
                _cell(m.get("pairs")),
            ]
        )
    return rows


def _retrieval_table(m: Mapping[str, Any]) -> list[str]:
    recall = m.get("recall_at_k") or {}
    ks = sorted(recall, key=lambda k: int(k) if str(k).isdigit() else math.inf)
    header = ["Queries", "Excluded", "P@1 (%)", "R-Precision (%)", "MAP@R (%)"]
    header += [f"Recall@{k} (%)" for k in ks]
    row = [_cell(m.get("queries")), _cell(m.get("excluded"))]
    row += [_cell(m.get(key), percent=True) for key in ("precision_at_1", "r_precision")]
    row += [_cell(m.get("map_at_r"), percent=True)]
    row += [_cell(recall[k], percent=True) for k in ks]
    align = ["---:" for _ in header]
    return [_row(header), "| " + " | ".join(align) + " |", _row(row)]


IJB_NOTE = (
    "TAR@FAR as insightface's eval_ijbc.py prints it: the TPR at the ROC point whose FAR is "
    "closest to the target (scikit-learn's roc_curve with its default point dropping); the "
    "interpolated row reads the full ROC at exactly the target. Modes: F flip test, N norm "
    f"score (feature norms kept), D detector score. {MISSING}: fewer than 1/FAR imposter pairs."
)
IDENTIFICATION_NOTE = (
    "Gallery: one template per identity (the mean of its normalised embeddings). CMC: the "
    "share of mated probes whose identity ranks within r. TPIR@FPIR: the threshold lets "
    "through that share of non-mated probes; a mated probe counts when its identity ranks "
    f"first above it. {MISSING}: fewer than 1/FPIR non-mated probes."
)


def _ijb_table(metrics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    header = ["Benchmark", "TAR@FAR", *(f"{f} (%)" for f in IJB_FARS), "AUC", "Pairs", "Templates"]
    header += ["Images", "Modes"]
    rows = []
    for name, m in metrics.items():
        modes = "".join(c for c, k in (("F", "flip"), ("N", "norm_score"), ("D", "detector_score"))
                        if m.get(k))  # fmt: skip
        for how, key in (("closest (insightface)", "tar_at_far"),
                         ("interpolated", "tar_at_far_interpolated")):  # fmt: skip
            tar = m.get(key) or {}
            cells = [_cell(tar.get(f), percent=True) for f in IJB_FARS]
            cells += [_cell(m.get("auc"), digits=4), _cell(m.get("pairs"))]
            cells += [_cell(m.get("templates")), _cell(m.get("images")), modes or "none"]
            rows.append([name, how, *cells])
    return _table(header, rows)


def _identification_table(metrics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One row per gallery: the ``identification`` benchmark, or each gallery of an IJB 1:N
    benchmark (``G1``, ``G2``, their ``mean``, …)."""
    header = ["Benchmark", "Gallery", "Rank-1 (%)", "Rank-5 (%)", "Rank-10 (%)", "Rank-20 (%)"]
    header += ["TPIR@FPIR=1e-3 (%)", "1e-2 (%)", "1e-1 (%)", "Mated", "Non-mated"]
    rows = []
    for name, m in metrics.items():
        parts = [("all", m)] if "cmc" in m else [(k, v) for k, v in m.items()
                                                  if isinstance(v, Mapping)]  # fmt: skip
        for gallery, g in parts:
            cmc, tpir = g.get("cmc") or {}, g.get("tpir_at_fpir") or {}
            cells = [_cell(cmc.get(r), percent=True) for r in ("1", "5", "10", "20")]
            cells += [_cell(tpir.get(f), percent=True) for f in ("0.001", "0.01", "0.1")]
            cells += [_cell(g.get("mated")), _cell(g.get("non_mated"))]
            rows.append([name, str(gallery), *cells])
    return _table(header, rows)


def render_markdown(
    metrics: Mapping[str, Mapping[str, Any]],
    *,
    notes: Mapping[str, Mapping[str, object]],
    templates: Sequence[str] = (),
    identification: Sequence[str] = (),
) -> str:
    """The Markdown report of ``metrics``: tables for pair lists, IJB benchmarks (named in
    ``templates``), 1:N identification (``identification``) and retrieval, then notes."""
    lines = ["# Evaluation", ""]
    rows = _verification_rows(metrics, {*templates, *identification})
    if rows:
        lines += ["## Verification", "", *_table(VERIFICATION_HEADER, rows), "", VERIFICATION_NOTE]
        lines += ["", f"![ROC]({ROC_PNG})", "", f"![Scores]({SCORES_PNG})", ""]
    if templates:
        lines += ["## IJB template verification (1:1)", ""]
        lines += _ijb_table({n: metrics[n] for n in templates})
        lines += ["", IJB_NOTE, "", *([] if rows else [f"![ROC]({ROC_PNG})", ""])]
    if identification:
        lines += ["## Identification (1:N)", ""]
        lines += _identification_table({n: metrics[n] for n in identification})
        lines += ["", IDENTIFICATION_NOTE, ""]
    if RETRIEVAL in metrics:
        lines += ["## Retrieval", "", *_retrieval_table(metrics[RETRIEVAL]), ""]
        lines += ["Leave-one-out over the labelled embeddings, cosine similarity.", ""]
    noted = [(name, key) for name, extra in notes.items() for key in extra]
    if noted:
        lines += ["## Notes", ""]
        lines += [f"- {_text(name)}: {key} = {metrics[name][key]}" for name, key in noted]
        lines += [""]
    return "\n".join(lines)


def _margins(fig: Figure, *, columns: int = 1, rows: int = 1, bottom: float = 0.6) -> None:
    """Fixed margins and gaps in inches, room for tick labels, axis labels and titles (a
    constrained layout measures every text first: 1.3 to 1.6 times the rendering time)."""
    width, height = fig.get_size_inches()
    left, right, top, gap_x, gap_y = 0.7, 0.2, 0.4, 0.7, 0.9
    axes_w = (width - left - right - (columns - 1) * gap_x) / columns
    axes_h = (height - bottom - top - (rows - 1) * gap_y) / rows
    fig.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=gap_x / axes_w,
        hspace=gap_y / axes_h,
    )


def roc_figure(
    verification: Mapping[str, PairScores], templates: Mapping[str, IjbResult] | None = None
) -> Figure:
    """TAR against FAR (log axis, 1e-6 to 1), one curve per benchmark (pair lists, then IJB
    benchmarks), its AUC in the legend.

    Each curve starts at the smallest FAR its imposter pairs can measure (1 / imposters); the
    ROC points at FAR 0 are not drawn.
    """
    from matplotlib.figure import Figure

    curves = [(n, *s.roc(), s.result.get("auc")) for n, s in verification.items()]
    curves += [(n, r.far, r.tar, r.result.get("auc")) for n, r in (templates or {}).items()]
    legend = 0.15 + 0.25 * math.ceil(len(curves) / 2)  # inches below the x label
    fig = Figure(figsize=(7, 5 + legend), dpi=100)
    _margins(fig, bottom=0.6 + legend)
    ax = fig.add_subplot()
    for name, far_all, tar_all, auc_value in curves:
        far, tar = roc_corners(far_all, tar_all)
        auc = _cell(auc_value, digits=4)
        ax.plot(far, tar, linewidth=1.5, label=f"{_label(name)} (AUC {auc})")
    ax.set_xscale("log", nonpositive="mask")  # FAR 0 is below what the pairs can measure
    ax.set_xlim(*FAR_RANGE)
    ax.set_ylim(0.0, 1.005)
    ax.set_xlabel("False accept rate (FAR)")
    ax.set_ylabel("True accept rate (TAR)")
    ax.set_title("ROC")
    ax.grid(True, which="major", alpha=0.4)
    ax.grid(True, which="minor", alpha=0.15)
    # below the axes, two columns: a legend inside would hide some curve
    fig.legend(loc="lower center", ncols=2, frameon=False, bbox_to_anchor=(0.5, 0.0))
    return fig


def roc_corners(far: np.ndarray, tar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ROC points without those inside a vertical or horizontal run: the same drawn curve
    from far fewer points (a ROC of n pairs has up to n + 1 points, mostly on such runs)."""
    far, tar = np.asarray(far), np.asarray(tar)
    keep = np.ones(len(far), bool)
    if len(far) > 2:
        d_far, d_tar = np.diff(far), np.diff(tar)
        inside = ((d_far[:-1] == 0) & (d_far[1:] == 0)) | ((d_tar[:-1] == 0) & (d_tar[1:] == 0))
        keep[1:-1] = ~inside
    return far[keep], tar[keep]


def scores_figure(verification: Mapping[str, PairScores]) -> Figure:
    """Per benchmark, genuine and imposter cosine-similarity histograms with the threshold."""
    from matplotlib.figure import Figure

    columns = min(len(verification), 3)
    rows = math.ceil(len(verification) / columns)
    fig = Figure(figsize=(5 * columns, 3.6 * rows), dpi=100)
    _margins(fig, columns=columns, rows=rows)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, (name, scores) in zip(axes, verification.items(), strict=False):  # more axes than plots
        sims = np.asarray(scores.similarities, np.float64)
        same = np.asarray(scores.same, bool)
        cosine = 1.0 - _number(scores.result.get("threshold"), where=f"{name}.threshold") / 2
        edges = np.histogram_bin_edges(np.append(sims, cosine), bins=60)
        for part, label, colour in ((same, "genuine", "tab:blue"), (~same, "imposter", "tab:red")):
            if part.any():
                ax.hist(sims[part], bins=edges, density=True, alpha=0.55, color=colour,
                        label=f"{label} ({int(part.sum())})")  # fmt: skip
        ax.axvline(cosine, color="black", linestyle="--", label=f"threshold (cos {cosine:.3f})")
        accuracy = _cell(scores.result.get("accuracy"), percent=True)
        ax.set_title(f"{_label(name)}: accuracy {accuracy}%")
        ax.set_xlabel("cosine similarity")
        ax.set_ylabel("density")
        ax.legend(loc="upper left", fontsize="small")
    for ax in axes[len(verification) :]:
        ax.set_axis_off()
    return fig


def _number(value: object, *, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{where} is {value!r}; expected a number")
    return float(value)


def _npy_bytes(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(values, np.float64), allow_pickle=False)
    return buffer.getvalue()


def png_bytes(fig: Figure) -> bytes:
    """``fig`` rendered by the Agg backend as PNG bytes (no pyplot: no figure stays open)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _write_files(out: Path, files: Mapping[str, bytes]) -> None:
    """Write ``files`` into ``out``: a new folder by one rename, an existing one file by file."""
    if out.is_dir():
        _write_each(out, files)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = temp_sibling(out)
    try:
        staging.mkdir()
        _write_each(staging, files)
        try:
            staging.rename(out)  # refused, not clobbering, if a non-empty out appeared meanwhile
        except OSError:
            if not out.is_dir():
                raise
            _write_each(out, files)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_each(folder: Path, files: Mapping[str, bytes]) -> None:
    """Write ``files`` into ``folder``, renamed into place together: a failure (a full disk
    at the last) leaves every earlier version as it was."""
    with committed_together(*(folder / name for name in files)):
        for name, data in files.items():
            atomic_write_bytes(folder / name, data)
