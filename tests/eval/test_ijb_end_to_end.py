"""`fmlkit evaluate --ijb DIR` end to end on a synthetic IJB-C folder (`fmlkit synth --ijb`):
the one command a user with an IJB-C download and an arcface_torch ``backbone.pth`` runs
equals the same protocol done by hand — `fmlkit align --landmarks` on the loose crops,
`fmlkit embed` of the aligned crops, then insightface's eval_ijbc.py arithmetic written as
plain loops with scikit-learn's ``roc_curve``. Also: the embeddings cache, ``--embeddings``,
the mode switches, 1:N, and the errors a user meets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.hostile.check import fmlkit, refused, succeeded
from tests.models.arcface_torch_ref import reference

FARS = ("1e-6", "1e-5", "1e-4", "1e-3", "1e-2", "1e-1")
MODEL = ("--backbone", "mobilefacenet")


@pytest.fixture(scope="module")
def ijb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ijb") / "IJBC"
    succeeded(fmlkit("synth", folder, "-n", "10", "-m", "6", "--ijb", "ijbc", "--seed", "3"))
    return folder


@pytest.fixture(scope="module")
def weights(ijb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """arcface_torch's mobilefacenet, random, its batch norms' statistics taken from the loose
    crops (resized, not aligned): untouched, every face gets nearly the same embedding (cosine
    0.9995 ± 0.0002) and the ROC is float noise; calibrated, cosine 0.08 ± 0.12."""
    from PIL import Image

    torch.manual_seed(0)
    net = reference("mobilefacenet")
    crops = sorted((ijb / "loose_crop").glob("*.jpg"))
    pixels = [np.asarray(Image.open(p).convert("RGB").resize((112, 112))) for p in crops]
    batch = (torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # the plain mean over the batch
    net.train()
    with torch.no_grad():
        net(batch)
    path = tmp_path_factory.mktemp("weights") / "backbone.pth"
    torch.save(net.eval().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def first_run(ijb: Path, weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one command, with the default switches (flip, norm score, detector score)."""
    out = tmp_path_factory.mktemp("runs")
    result = fmlkit("evaluate", "--weights", weights, *MODEL, "--ijb", ijb, "-o", out / "eval",
                    "--cache-dir", out / "cache")  # fmt: skip
    succeeded(result)
    assert "ijbc TAR@FAR (%, closest)" in result.output and "cached in" in result.output
    return out


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def _meta(ijb: Path) -> tuple[list[list[str]], dict[str, tuple[float, ...]], list[list[int]]]:
    meta = ijb / "meta"
    faces = [line.split() for line in (meta / "ijbc_face_tid_mid.txt").read_text().splitlines()]
    points = {}
    for line in (meta / "ijbc_name_5pts_score.txt").read_text().splitlines():
        name, *numbers = line.split()
        points[name] = tuple(float(v) for v in numbers)
    pair_lines = (meta / "ijbc_template_pair_label.txt").read_text().splitlines()
    return faces, points, [[int(v) for v in line.split()] for line in pair_lines]


def _by_hand(ijb: Path, weights: Path, work: Path) -> dict[str, np.ndarray]:
    """Each crop's flip-sum embedding: `fmlkit align --landmarks`, then `fmlkit embed`."""
    import pyarrow.parquet as pq

    faces, _, _ = _meta(ijb)
    table = work / "crops.csv"
    with table.open("w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(["file_name", "label"])
        rows.writerows([name, f"t{template}"] for name, template, _ in faces)
    aligned = work / "aligned"
    succeeded(fmlkit("align", table, "--root", ijb / "loose_crop", "--landmarks",
                     ijb / "meta" / "ijbc_name_5pts_score.txt", "-o", aligned))  # fmt: skip
    with (work / "aligned.csv").open() as f:
        crop_of = {row["file_name"]: row["aligned"] for row in csv.DictReader(f)}
    assert all(crop_of.values())  # every crop aligned
    crops = work / "aligned_crops.csv"
    crops.write_text("file_name,label\n" + "".join(f"{c},x\n" for c in crop_of.values()))
    embedded = work / "emb.parquet"
    succeeded(fmlkit("embed", "--weights", weights, *MODEL, "--input", crops, "--root", aligned,
                     "-o", embedded))  # fmt: skip
    got = pq.read_table(embedded).to_pydict()
    vectors = dict(zip(got["file_name"], got["embedding"], strict=True))
    return {name: np.asarray(vectors[crop_of[name]], np.float64) for name, _, _ in faces}


def _insightface_scores(
    ijb: Path, vectors: dict[str, np.ndarray], *, norm_score: bool, detector_score: bool
) -> np.ndarray:
    """eval_ijbc.py's arithmetic as loops: image features, media means summed per template,
    normalised; each pair's dot product."""
    faces, points, pairs = _meta(ijb)
    templates: dict[int, dict[int, list[np.ndarray]]] = {}
    for name, template, media in faces:
        x = vectors[name].copy()
        if not norm_score:
            x /= np.linalg.norm(x)
        if detector_score:
            x *= points[name][-1]
        templates.setdefault(int(template), {}).setdefault(int(media), []).append(x)
    feature = {}
    for template, medias in templates.items():
        total = sum(np.mean(images, axis=0) for images in medias.values())
        feature[template] = total / np.linalg.norm(total)
    return np.array([feature[a] @ feature[b] for a, b, _ in pairs])


def _insightface_tar(ijb: Path, scores: np.ndarray) -> dict[str, float]:
    """eval_ijbc.py's TAR@FAR: sklearn's roc_curve, flipped, the closest FPR's TPR (targets
    with at least 1/FAR imposter pairs)."""
    from sklearn.metrics import roc_curve

    labels = [label for _, _, label in _meta(ijb)[2]]
    fpr, tpr, _ = roc_curve(labels, scores)
    fpr, tpr = np.flipud(fpr), np.flipud(tpr)
    result = {}
    for far in FARS:
        if labels.count(0) >= round(1 / float(far)):
            _, index = min(zip(abs(fpr - float(far)), range(len(fpr)), strict=True))
            result[far] = float(tpr[index])
    return result


def _check(ijb: Path, out: Path, vectors: dict[str, np.ndarray], **modes: bool) -> None:
    """The report's scores equal the loops' (float32 features: to 1e-5), and its TAR@FAR is
    insightface's reading of those scores."""
    scores = np.load(out / "ijbc.npy")
    assert scores == pytest.approx(_insightface_scores(ijb, vectors, **modes), abs=1e-5)
    got = _metrics(out)["ijbc"]["tar_at_far"]
    expected = _insightface_tar(ijb, scores)
    assert len(expected) == 2  # 1e-2 and 1e-1 are measurable with this many imposter pairs
    assert {far: v for far, v in got.items() if v is not None} == expected


def test_one_command_equals_align_embed_and_insightface_by_hand(
    ijb: Path, weights: Path, first_run: Path, tmp_path: Path
) -> None:
    got = _metrics(first_run / "eval")["ijbc"]
    vectors = _by_hand(ijb, weights, tmp_path)
    _check(ijb, first_run / "eval", vectors, norm_score=True, detector_score=True)
    faces, _, pairs = _meta(ijb)
    assert (got["pairs"], got["images"]) == (len(pairs), len(faces))
    assert got["templates"] == len({template for _, template, _ in faces})
    assert (got["flip"], got["norm_score"], got["detector_score"]) == (True, True, True)
    assert (first_run / "eval" / "roc.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    ("switch", "key"),
    [("--no-norm-score", "norm_score"), ("--no-detector-score", "detector_score")],
)
def test_switching_a_mode_reuses_the_cached_embeddings(
    ijb: Path, weights: Path, first_run: Path, tmp_path: Path, switch: str, key: str
) -> None:
    cache = first_run / "cache"
    cached = {p: p.stat().st_mtime_ns for p in cache.rglob("*.parquet")}
    assert len(cached) == 2  # the flip sums and the plain embeddings
    result = fmlkit("evaluate", "--weights", weights, *MODEL, "--ijb", ijb, switch,
                    "-o", tmp_path / "eval", "--cache-dir", cache)  # fmt: skip
    succeeded(result)
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.parquet")} == cached
    got = _metrics(tmp_path / "eval")["ijbc"]
    assert got[key] is False
    vectors = {}
    import pyarrow.parquet as pq

    flip_sums = pq.read_table(next(cache.rglob("flip_sum.parquet"))).to_pydict()
    for name, vector in zip(flip_sums["file_name"], flip_sums["embedding"], strict=True):
        vectors[name] = np.asarray(vector, np.float64)
    options = {"norm_score": True, "detector_score": True, key: False}
    _check(ijb, tmp_path / "eval", vectors, **options)
    first = np.load(first_run / "eval" / "ijbc.npy")
    assert np.abs(np.load(tmp_path / "eval" / "ijbc.npy") - first).max() > 1e-4  # it matters


def test_the_cached_flip_sums_score_the_same_through_embeddings(
    ijb: Path, first_run: Path, tmp_path: Path
) -> None:
    flip_sums = next((first_run / "cache").rglob("flip_sum.parquet"))
    succeeded(fmlkit("evaluate", "--embeddings", flip_sums, "--ijb", ijb, "-o", tmp_path / "e"))
    first, again = _metrics(first_run / "eval"), _metrics(tmp_path / "e")
    assert again["ijbc"] == first["ijbc"] and again["ijbc_1n"] == first["ijbc_1n"]
    assert np.array_equal(np.load(tmp_path / "e" / "ijbc.npy"),
                          np.load(first_run / "eval" / "ijbc.npy"))  # fmt: skip


def test_no_flip_test_embeds_nothing_new_and_uses_the_plain_embeddings(
    ijb: Path, weights: Path, first_run: Path, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    cache = first_run / "cache"
    result = fmlkit("evaluate", "--weights", weights, *MODEL, "--ijb", ijb, "--no-flip-sum",
                    "-o", tmp_path / "eval", "--cache-dir", cache)  # fmt: skip
    succeeded(result)
    plain = pq.read_table(next(cache.rglob("plain.parquet"))).to_pydict()
    vectors = {n: np.asarray(v, np.float64) for n, v in zip(plain["file_name"], plain["embedding"],
                                                             strict=True)}  # fmt: skip
    got = _metrics(tmp_path / "eval")["ijbc"]
    assert got["flip"] is False
    _check(ijb, tmp_path / "eval", vectors, norm_score=True, detector_score=True)


def test_the_1n_protocol_is_scored_per_gallery(first_run: Path, ijb: Path) -> None:
    one_to_n = _metrics(first_run / "eval")["ijbc_1n"]
    assert set(one_to_n) == {"G1", "G2", "mean", "G1+G2"}
    with (ijb / "meta" / "ijbc_1N_probe_mixed.csv").open() as f:
        probes = {row["TEMPLATE_ID"] for row in csv.DictReader(f)}
    for gallery in ("G1", "G2"):
        m = one_to_n[gallery]
        assert m["mated"] + m["non_mated"] == len(probes) and m["mated"] and m["non_mated"]
    assert one_to_n["G1+G2"]["mated"] == len(probes)
    md = (first_run / "eval" / "metrics.md").read_text()
    assert "## Identification (1:N)" in md and "| ijbc_1n | G1+G2 |" in md


def test_a_missing_crop_is_named_and_skip_missing_leaves_it_out(
    ijb: Path, weights: Path, tmp_path: Path
) -> None:
    import shutil

    broken = tmp_path / "IJBC"
    shutil.copytree(ijb, broken)
    (broken / "loose_crop" / "2.jpg").unlink()
    (broken / "loose_crop" / "3.jpg").write_bytes(b"not a jpeg")
    args = ["evaluate", "--weights", weights, *MODEL, "--ijb", broken,
            "--cache-dir", tmp_path / "c"]  # fmt: skip
    refused(fmlkit(*args, "-o", tmp_path / "e"), says=["2 of 60 IJB crops", "2.jpg (missing)",
                                                       "3.jpg", "--skip-missing"])  # fmt: skip
    assert not (tmp_path / "e").exists()
    succeeded(fmlkit(*args, "--skip-missing", "-o", tmp_path / "e"))
    got = _metrics(tmp_path / "e")["ijbc"]
    assert got["images"] == 58 and got["skipped_images"] == 2
    succeeded(fmlkit(*args, "--skip-missing", "--no-norm-score", "-o", tmp_path / "n"))
    assert _metrics(tmp_path / "n")["ijbc"]["images"] == 58  # zero rows never normalised


def test_a_pair_naming_an_unknown_template_names_the_file_and_line(
    ijb: Path, tmp_path: Path, first_run: Path
) -> None:
    import shutil

    broken = tmp_path / "IJBC"
    shutil.copytree(ijb / "meta", broken / "meta")
    pairs = broken / "meta" / "ijbc_template_pair_label.txt"
    lines = pairs.read_text().splitlines()
    lines[4] = "999999 1 0"
    pairs.write_text("\n".join(lines) + "\n")
    flip_sums = next((first_run / "cache").rglob("flip_sum.parquet"))
    result = fmlkit("evaluate", "--embeddings", flip_sums, "--ijb", broken, "-o", tmp_path / "e")
    refused(result, says=["ijbc_template_pair_label.txt", "5", "999999"])
    assert not (tmp_path / "e").exists()


def test_a_crop_absent_from_the_embeddings_is_named(
    ijb: Path, tmp_path: Path, first_run: Path
) -> None:
    from fmlkit.data.formats.embeddings import read_embeddings, write_embeddings

    table = read_embeddings(next((first_run / "cache").rglob("flip_sum.parquet")))
    names = table.file_names
    short = tmp_path / "short.parquet"
    write_embeddings(short, names[1:], None, table.vectors[1:])
    result = fmlkit("evaluate", "--embeddings", short, "--ijb", ijb, "-o", tmp_path / "e")
    refused(result, says=["1 of 60 IJB crops", f"{names[0]} (absent from the embeddings)"])


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--no-norm-score"], "--no-norm-score is a switch of the IJB protocol"),
        (["--no-detector-score"], "--no-detector-score is a switch of the IJB protocol"),
        (["--cache-dir", "C"], "--cache-dir holds a model's IJB embeddings"),
        (["--gallery", "E"], "1:N identification needs both --gallery and --probes"),
    ],
)
def test_ijb_and_1n_options_that_do_not_fit_are_usage_errors(
    first_run: Path, tmp_path: Path, args: list[str], says: str
) -> None:
    flip_sums = next((first_run / "cache").rglob("flip_sum.parquet"))
    given = [str(flip_sums) if a == "E" else str(tmp_path / a) if a == "C" else a for a in args]
    (tmp_path / "p.csv").write_text("1,a,b\n")
    result = fmlkit("evaluate", "--embeddings", flip_sums, "--pairs", tmp_path / "p.csv", *given,
                    "-o", tmp_path / "e")  # fmt: skip
    refused(result, says=[says], code=2)


def test_gallery_and_probes_from_embeddings_equal_the_library(tmp_path: Path) -> None:
    from fmlkit.data.formats.embeddings import write_embeddings
    from fmlkit.eval.identification import identification_metrics

    rng = np.random.default_rng(5)
    centres = rng.standard_normal((30, 16))
    g_labels = np.repeat(np.arange(20), 2)  # 20 identities enrolled, 10 never
    p_labels = rng.integers(0, 30, 200)
    gallery = centres[g_labels] + rng.standard_normal((40, 16))
    probes = centres[p_labels] + rng.standard_normal((200, 16))
    g_path, p_path = tmp_path / "g.parquet", tmp_path / "p.parquet"
    write_embeddings(g_path, [f"g{i}" for i in range(40)], [f"id{v}" for v in g_labels], gallery)
    write_embeddings(p_path, [f"p{i}" for i in range(200)], [f"id{v}" for v in p_labels], probes)
    result = fmlkit("evaluate", "--gallery", g_path, "--probes", p_path, "-o", tmp_path / "e")
    succeeded(result)
    assert "identification all (%): rank-1" in result.output
    got = _metrics(tmp_path / "e")["identification"]
    expected = identification_metrics(
        gallery.astype(np.float32), [f"id{v}" for v in g_labels],
        probes.astype(np.float32), [f"id{v}" for v in p_labels],
    )  # fmt: skip
    assert got["cmc"] == pytest.approx(expected["cmc"])
    assert got["tpir_at_fpir"]["0.1"] == pytest.approx(expected["tpir_at_fpir"]["0.1"])
    assert (got["mated"], got["non_mated"]) == (expected["mated"], expected["non_mated"])
    assert not (tmp_path / "e" / "roc.png").exists()  # no curve to draw


def test_a_crop_replaced_in_place_is_embedded_again(
    ijb: Path, weights: Path, tmp_path: Path
) -> None:
    import shutil

    folder = tmp_path / "IJBC"
    shutil.copytree(ijb, folder)
    args = [
        "evaluate",
        "--weights",
        weights,
        *MODEL,
        "--ijb",
        folder,
        "--cache-dir",
        tmp_path / "c",
    ]
    succeeded(fmlkit(*args, "-o", tmp_path / "e1"))
    crop = folder / "loose_crop" / "1.jpg"
    crop.write_bytes((folder / "loose_crop" / "7.jpg").read_bytes())  # another face, same name
    succeeded(fmlkit(*args, "-o", tmp_path / "e2"))
    keys = sorted(p.parent for p in (tmp_path / "c").rglob("flip_sum.parquet"))
    assert len(keys) == 2  # a new key: the stale embedding of 1.jpg is never reused
    assert not np.array_equal(np.load(tmp_path / "e1" / "ijbc.npy"),
                              np.load(tmp_path / "e2" / "ijbc.npy"))  # fmt: skip
