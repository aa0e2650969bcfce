"""`identify` (1:N from embeddings Parquets or image tables, with templates) and
`ijb_identification` (IJB's G1/G2 protocol), checked against loops written from the
definitions: IJB pooling (images of a media averaged, medias summed, normalised), per-identity
enrolment (mean of normalised vectors, normalised), the rank of the mated identity, and the
open-set threshold (the (⌊f·N⌋+1)-th highest non-mated best score, mated hits above it)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fmlkit.columns import MEDIA, TEMPLATE
from fmlkit.data.formats.embeddings import write_embeddings
from fmlkit.errors import InputError
from fmlkit.eval.identify import identify, ijb_identification

RANKS, FPIRS = (1, 5, 10, 20), (1e-3, 1e-2, 1e-1)


# --- references, written from the definitions ---


def ref_pool(
    vectors: np.ndarray,
    labels: Sequence[str],
    templates: Sequence[object],
    medias: Sequence[object] | None,
    norm_score: bool,
) -> tuple[list[str], np.ndarray]:
    """Per template (in first-seen order): its label and its IJB feature."""
    groups: dict[object, dict[object, list[np.ndarray]]] = {}
    label_of: dict[object, str] = {}
    for i, (v, t) in enumerate(zip(vectors, templates, strict=True)):
        x = np.asarray(v, np.float64)
        if not norm_score:
            x = x / math.sqrt(float(x @ x))
        media = i if medias is None else medias[i]
        groups.setdefault(t, {}).setdefault(media, []).append(x)
        label_of[t] = labels[i]
    feats = []
    for by_media in groups.values():
        total = sum(sum(images) / len(images) for images in by_media.values())
        feats.append(total / math.sqrt(float(total @ total)))
    return [label_of[t] for t in groups], np.array(feats)


def ref_identification(
    gallery: np.ndarray,
    gallery_labels: Sequence[object],
    probes: np.ndarray,
    probe_labels: Sequence[object],
) -> dict[str, Any]:
    """CMC and TPIR@FPIR by a loop per probe over the identities."""
    names = sorted({str(label) for label in gallery_labels})
    enrolled = []
    for name in names:
        rows = [
            g / np.linalg.norm(g)
            for g, lab in zip(gallery, gallery_labels, strict=True)
            if str(lab) == name
        ]
        mean = sum(rows) / len(rows)
        enrolled.append(mean / np.linalg.norm(mean))
    ranks, hits_first, best_scores, non_mated = [], [], [], []
    for vector, label in zip(probes, probe_labels, strict=True):
        q = vector / np.linalg.norm(vector)
        scores = [float(q @ t) for t in enrolled]
        best = max(range(len(scores)), key=lambda j: (scores[j], -j))
        if str(label) not in names:
            non_mated.append(scores[best])
            continue
        mate = names.index(str(label))
        own = scores[mate]
        ahead = sum(1 for j, s in enumerate(scores) if s > own or (s == own and j < mate))
        ranks.append(ahead + 1)
        hits_first.append(best == mate)
        best_scores.append(scores[best])
    cmc = {str(r): sum(k <= r for k in ranks) / len(ranks) for r in RANKS}
    ordered = sorted(non_mated, reverse=True)
    tpir: dict[str, float | None] = {}
    thresholds: dict[str, float | None] = {}
    for f in FPIRS:
        if len(ordered) * f < 1:
            tpir[str(f)] = thresholds[str(f)] = None
            continue
        allowed = math.floor(f * len(ordered))
        t = ordered[allowed] if allowed < len(ordered) else -math.inf
        passed = [h and s > t for h, s in zip(hits_first, best_scores, strict=True)]
        tpir[str(f)], thresholds[str(f)] = sum(passed) / len(passed), t
    return {
        "cmc": cmc,
        "tpir_at_fpir": tpir,
        "thresholds": thresholds,
        "mated": len(ranks),
        "non_mated": len(non_mated),
        "identities": len(names),
    }


def assert_same(got: dict[str, Any], expected: dict[str, Any]) -> None:
    for key in ("cmc", "tpir_at_fpir", "mated", "non_mated", "identities"):
        assert got[key] == expected[key], key
    assert got["thresholds"].keys() == expected["thresholds"].keys()
    for f, t in expected["thresholds"].items():
        assert (got["thresholds"][f] is None) == (t is None)
        if t is not None:
            assert got["thresholds"][f] == pytest.approx(t, abs=1e-5)


# --- data ---


def clusters(rng: np.random.Generator, labels: Sequence[int], dim: int = 8) -> np.ndarray:
    """A noisy vector per label around its identity's centre, each of a random norm (so
    keeping or removing norms changes a template's feature)."""
    centres = np.random.default_rng(99).normal(size=(100, dim))
    noisy = centres[list(labels)] + rng.normal(scale=0.9, size=(len(labels), dim))
    return (noisy * rng.uniform(0.2, 5.0, size=(len(labels), 1))).astype(np.float32)


def write_side(
    path: Path,
    labels: Sequence[object] | None,
    vectors: np.ndarray,
    extra: dict[str, Sequence[object]] | None = None,
) -> Path:
    """An embeddings Parquet as `fmlkit embed` writes it, plus ``extra`` columns."""
    names = [f"img{i:04d}.jpg" for i in range(len(vectors))]
    text = None if labels is None else [None if v is None else str(v) for v in labels]
    write_embeddings(path, names, text, vectors)
    if extra:
        table = pq.read_table(path)
        for column, values in extra.items():
            table = table.append_column(column, pa.array(list(values)))
        pq.write_table(table, path)
    return path


@pytest.fixture
def plain(tmp_path: Path) -> tuple[Path, Path, dict[str, Any]]:
    """12 identities × 3 gallery images; 40 mated probes and 30 of 10 other identities."""
    rng = np.random.default_rng(0)
    g_labels = [i for i in range(12) for _ in range(3)]
    p_labels = rng.integers(0, 12, 40).tolist() + rng.integers(50, 60, 30).tolist()
    g, p = clusters(rng, g_labels), clusters(rng, p_labels)
    expected = ref_identification(g, g_labels, p, p_labels)
    return (
        write_side(tmp_path / "g.parquet", g_labels, g),
        write_side(tmp_path / "p.parquet", p_labels, p),
        expected,
    )


# --- identify ---


def test_identify_plain_rows_equals_the_loop(plain: tuple[Path, Path, dict[str, Any]]) -> None:
    gallery, probes, expected = plain
    got = identify(gallery, probes)
    assert_same(got, expected)
    assert (got["mated"], got["non_mated"], got["identities"]) == (40, 30, 12)
    assert got["tpir_at_fpir"]["0.001"] is None and got["tpir_at_fpir"]["0.1"] is not None
    assert 0 < got["cmc"]["1"] < got["cmc"]["5"] <= 1  # not trivial either way
    assert got["gallery"] == {
        "source": str(gallery),
        "images": 36,
        "templates": None,
        "entries": 36,
    }
    assert got["probes"]["entries"] == 70 and "skipped_undecodable" not in got


def templated(rng: np.random.Generator, identities: Sequence[int], per: int) -> dict[str, Any]:
    """``per`` templates per identity, of 1–4 images spread over 1–3 medias (templates of one
    image, and medias of several images, both occur); template ids are IJB-like integers."""
    labels, templates, medias = [], [], []
    for identity in identities:
        for k in range(per):
            images = int(rng.integers(1, 5))
            template = 1000 * identity + k + 7
            for i in range(images):
                labels.append(identity)
                templates.append(template)
                medias.append(50_000 + 10 * template + int(i * rng.integers(1, 3) // 2))
    return {"labels": labels, TEMPLATE: templates, MEDIA: medias, "vectors": clusters(rng, labels)}


@pytest.mark.parametrize("norm_score", [True, False])
def test_identify_pools_templates_as_ijb_does(tmp_path: Path, norm_score: bool) -> None:
    rng = np.random.default_rng(1)
    g = templated(rng, range(10), per=2)
    p = templated(rng, list(range(10)) + list(range(60, 72)), per=3)
    sizes = np.unique(p[TEMPLATE], return_counts=True)[1]
    assert 1 in sizes and max(sizes) > 1  # templates of one image and of several
    _, per_media = np.unique(np.stack([p[TEMPLATE], p[MEDIA]]), axis=1, return_counts=True)
    assert max(per_media) > 1  # a media of several images
    gl, gf = ref_pool(g["vectors"], g["labels"], g[TEMPLATE], g[MEDIA], norm_score)
    pl, pf = ref_pool(p["vectors"], p["labels"], p[TEMPLATE], p[MEDIA], norm_score)
    gallery = write_side(
        tmp_path / "g.parquet", g["labels"], g["vectors"], {TEMPLATE: g[TEMPLATE], MEDIA: g[MEDIA]}
    )
    probes = write_side(
        tmp_path / "p.parquet", p["labels"], p["vectors"], {TEMPLATE: p[TEMPLATE], MEDIA: p[MEDIA]}
    )
    got = identify(gallery, probes, norm_score=norm_score)
    assert_same(got, ref_identification(gf, gl, pf, pl))
    assert got["probes"]["templates"] == got["probes"]["entries"] == len(pl) == 66
    assert got["probes"]["images"] == len(p["labels"]) and got["non_mated"] == 36
    other = identify(gallery, probes, norm_score=not norm_score)
    assert other["thresholds"]["0.1"] != pytest.approx(got["thresholds"]["0.1"], abs=1e-6)


def test_identify_without_a_media_column_takes_each_image_as_its_own_media(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(2)
    g, p = templated(rng, range(6), per=1), templated(rng, range(10), per=4)
    gl, gf = ref_pool(g["vectors"], g["labels"], g[TEMPLATE], None, True)
    pl, pf = ref_pool(p["vectors"], p["labels"], p[TEMPLATE], None, True)
    gallery = write_side(tmp_path / "g.parquet", g["labels"], g["vectors"], {TEMPLATE: g[TEMPLATE]})
    probes = write_side(
        tmp_path / "p.parquet",
        p["labels"],
        p["vectors"],
        {TEMPLATE: [f"t{t}" for t in p[TEMPLATE]]},
    )
    assert_same(identify(gallery, probes), ref_identification(gf, gl, pf, pl))


# --- ijb_identification ---


def test_ijb_identification_equals_the_loop_per_gallery_their_mean_and_joined() -> None:
    rng = np.random.default_rng(3)
    subjects = [s for s in range(20) for _ in range(4)] + list(range(20))  # probes, galleries
    ids = rng.permutation(np.arange(100) * 3 + 11)  # unsorted template ids
    feats = clusters(rng, subjects)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    probe_ids, probe_subjects = ids[:80], np.array(subjects[:80])
    g1 = (ids[80:90], np.arange(10))
    g2 = (ids[90:], np.arange(10, 20))
    got = ijb_identification(ids, feats, {"G1": g1, "G2": g2}, (probe_ids, probe_subjects))
    assert set(got) == {"G1", "G2", "mean", "G1+G2"}
    for name, (start, gallery) in {"G1": (80, g1), "G2": (90, g2)}.items():
        expected = ref_identification(
            feats[start : start + 10], gallery[1], feats[:80], probe_subjects
        )
        assert_same(got[name], expected)
        assert (got[name]["mated"], got[name]["non_mated"]) == (40, 40)  # open set
    for key in ("cmc", "tpir_at_fpir"):
        for k, v in got["mean"][key].items():
            both = [got["G1"][key][k], got["G2"][key][k]]
            assert v == (None if None in both else pytest.approx(sum(both) / 2))
    # insightface's ijb_1n.py: one closed-set gallery of G1 and G2, top-k by argsort
    joined = got["G1+G2"]
    assert joined["non_mated"] == 0 and joined["tpir_at_fpir"]["0.1"] is None
    similarity = feats[:80] @ feats[80:].T
    top = np.argsort(-similarity, axis=1)
    mask = probe_subjects  # gallery row k is subject k here
    for k in (1, 5, 10):
        assert joined["cmc"][str(k)] == np.mean([mask[i] in top[i, :k] for i in range(80)])
    assert 0 < joined["cmc"]["1"] < 1


def test_ijb_identification_refuses_unknown_and_zero_templates() -> None:
    ids, feats = np.array([5, 9, 2]), np.eye(3, dtype=np.float32)
    probes = (np.array([9]), np.array([1]))
    with pytest.raises(InputError, match=r"gallery G1: 1 templates have no feature \(77\)"):
        ijb_identification(ids, feats, {"G1": (np.array([5, 77]), np.array([0, 1]))}, probes)
    feats[0] = 0
    with pytest.raises(InputError, match=r"gallery G1: 1 templates pool to an all-zero.*\(5\)"):
        ijb_identification(ids, feats, {"G1": (np.array([5, 2]), np.array([0, 1]))}, probes)
    with pytest.raises(InputError, match="no 1:N gallery"):
        ijb_identification(ids, feats, {}, probes)


# --- bad input ---


def test_identify_refuses_each_bad_side(
    plain: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    gallery, probes, _ = plain
    vectors = np.ones((3, 8), np.float32)
    cases: list[tuple[Path, Path, str]] = [
        (
            gallery,
            write_side(tmp_path / "nolabel.parquet", None, vectors),
            r"nolabel.parquet has no label column: 1:N identification needs",
        ),
        (
            write_side(tmp_path / "null.parquet", ["a", None, "b"], vectors),
            probes,
            r"null.parquet: 1 rows have no label \(img0001.jpg\)",
        ),
        (
            gallery,
            write_side(tmp_path / "dim.parquet", ["0", "1", "2"], np.ones((3, 4))),
            r"8-dimensional.*dim.parquet 4-dimensional.*embed both with one model",
        ),
        (
            gallery,
            write_side(tmp_path / "empty.parquet", [], np.zeros((0, 8))),
            r"empty.parquet holds no embeddings",
        ),
        (
            gallery,
            write_side(tmp_path / "strangers.parquet", ["x", "y", "z"], vectors),
            r"no probe's identity is in the gallery.*strangers.parquet: x, y, z",
        ),
        (
            gallery,
            write_side(tmp_path / "mixed.parquet", ["0", "1", "1"], vectors, {TEMPLATE: [4, 4, 6]}),
            r"mixed.parquet: 1 templates hold images of two identities or more: 4 \(0, 1\)",
        ),
        (
            gallery,
            write_side(
                tmp_path / "notemplate.parquet", ["0", "1", "1"], vectors, {TEMPLATE: [4, None, 6]}
            ),
            r"notemplate.parquet: 1 rows have no template \(img0001.jpg\)",
        ),
        (
            gallery,
            write_side(
                tmp_path / "nomedia.parquet",
                ["0", "1", "1"],
                vectors,
                {TEMPLATE: [4, 5, 5], MEDIA: [1, 2, None]},
            ),
            r"nomedia.parquet: 1 rows have no media \(img0002.jpg\)",
        ),
        (
            gallery,
            write_side(tmp_path / "zero.parquet", ["0", "1", "1"], vectors * [[1], [0], [1]]),
            r"zero.parquet: 1 embeddings are all zeros \(img0001.jpg\)",
        ),
        (gallery, tmp_path / "absent.parquet", r"the probes .*absent.parquet: no such file"),
    ]
    table = tmp_path / "images.csv"
    table.write_text("file_name,label\na.jpg,0\n")
    cases.append((table, probes, r"images.csv is not an embeddings Parquet.*give a model"))
    for g, p, message in cases:
        with pytest.raises(InputError, match=message):
            identify(g, p)


# --- with a real (tiny, untrained) model on `fmlkit synth` images ---


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads on a shared 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_identify_embeds_image_tables_like_embed_does(tmp_path: Path) -> None:
    import torch

    from fmlkit.data.synth.synth import generate_synthetic_dataset
    from fmlkit.eval.embed import embed_dataset, load_embedder
    from fmlkit.models.backbones import create_backbone

    root = tmp_path / "faces"
    generate_synthetic_dataset(root, identities=6, images_per_identity=3, size=64, defects=False)
    torch.manual_seed(0)
    torch.save(
        create_backbone("mobilefacenet", embedding_size=16, image_size=32).state_dict(),
        tmp_path / "backbone.pth",
    )
    embedder = load_embedder(
        weights=tmp_path / "backbone.pth", backbone="mobilefacenet", image_size=32
    )
    (root / "id00005" / "broken.jpg").write_bytes(b"not a jpeg")
    ids = [f"id{i:05d}" for i in range(6)]
    gallery = tmp_path / "gallery.csv"
    gallery.write_text("file_name,label\n" + "".join(f"{i}/0000.jpg,{i}\n" for i in ids[:4]))
    rows = [(f"{i}/{n:04d}.jpg", i, f"T-{i}", f"m{n}") for i in ids for n in (1, 2)]
    rows.append(("id00005/broken.jpg", "id00005", "T-id00005", "m9"))
    probes = tmp_path / "probes.csv"
    probes.write_text(
        "file_name,label,template,media\n" + "".join(",".join(r) + "\n" for r in rows)
    )
    got = identify(gallery, probes, embedder=embedder, root=root, batch_size=4)
    assert got["skipped_undecodable"] == {"gallery": 0, "probes": 1}
    assert got["probes"]["images"] == 12 and got["probes"]["templates"] == 6
    assert (got["mated"], got["non_mated"], got["identities"]) == (4, 2, 4)
    # the same images through embed_dataset and Parquets: the same numbers
    g = embed_dataset(embedder, gallery, root=root)
    p = embed_dataset(embedder, probes, root=root)
    by_name = {r[0]: r for r in rows}
    p_path = write_side(
        tmp_path / "p.parquet",
        p.labels,
        p.embeddings,
        {
            TEMPLATE: [by_name[n][2] for n in p.file_names],
            MEDIA: [by_name[n][3] for n in p.file_names],
        },
    )
    write_embeddings(tmp_path / "g.parquet", g.file_names, g.labels, g.embeddings)
    from_parquets = identify(tmp_path / "g.parquet", p_path)
    for key in ("cmc", "tpir_at_fpir", "thresholds", "mated", "non_mated", "identities"):
        assert from_parquets[key] == got[key], key
    pl, pf = ref_pool(
        p.embeddings,
        p.labels,
        [by_name[n][2] for n in p.file_names],
        [by_name[n][3] for n in p.file_names],
        True,
    )
    assert_same(got, ref_identification(g.embeddings, g.labels, pf, pl))
    # a side already embedded mixes with a side embedded here
    mixed = identify(tmp_path / "g.parquet", probes, embedder=embedder, root=root)
    assert mixed["cmc"] == got["cmc"]
