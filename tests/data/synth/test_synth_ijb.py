"""`fmlkit synth --ijb`: the IJB layout, read back with plain file reading (not the IJB parser)."""

from __future__ import annotations

import csv
import hashlib
import resource
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmlkit.data.align.transform import similarity_transform
from fmlkit.data.align.types import ARCFACE_112
from fmlkit.data.align.warp import warp_affine
from fmlkit.data.synth.draw import IDENTITY_STREAM, seeded_rng
from fmlkit.data.synth.faces import create_identity
from fmlkit.data.synth.ijb import generate_ijb
from fmlkit.data.synth.ijb_draw import MAX_ROTATION, draw_media_head
from fmlkit.data.synth.ijb_plan import MAX_PAIRS, plan_pairs, plan_templates
from fmlkit.errors import InputError
from fmlkit.io import FAULT_ENV
from tests.hostile.check import fmlkit, fmlkit_process, nothing_complete, refused, succeeded

N, M, SEED = 8, 6, 5
META = {
    "faces": "ijbc_face_tid_mid.txt",
    "landmarks": "ijbc_name_5pts_score.txt",
    "pairs": "ijbc_template_pair_label.txt",
    "g1": "ijbc_1N_gallery_G1.csv",
    "g2": "ijbc_1N_gallery_G2.csv",
    "probes": "ijbc_1N_probe_mixed.csv",
}


@pytest.fixture(scope="module")
def ijb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 identities × 6 crops, IJB-C names, seed 5."""
    out = tmp_path_factory.mktemp("ijb") / "ijbc"
    generate_ijb(out, identities=N, images_per_identity=M, seed=SEED)
    return out


def _lines(path: Path) -> list[list[str]]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and "\r" not in text
    return [line.split(" ") for line in text.splitlines()]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _identity_of_template(ijb: Path) -> dict[int, int]:
    """Template id → identity index, from the truth CSV."""
    owner: dict[int, int] = {}
    for row in _rows(ijb.with_name("ijbc.truth.csv")):
        assert owner.setdefault(int(row["template"]), int(row["label"][2:])) == int(
            row["label"][2:]
        ), row
    return owner


def test_ijb_layout_and_counts(ijb: Path) -> None:
    assert sorted(p.name for p in ijb.iterdir()) == ["loose_crop", "meta"]
    assert sorted(p.name for p in (ijb / "meta").iterdir()) == sorted(META.values())
    crops = sorted(p.name for p in (ijb / "loose_crop").iterdir())
    assert crops == sorted(f"{k}.jpg" for k in range(1, N * M + 1))
    faces = _lines(ijb / "meta" / META["faces"])
    assert [f[0] for f in faces] == [f"{k}.jpg" for k in range(1, N * M + 1)]
    assert all(len(f) == 3 and int(f[1]) > 0 and int(f[2]) > 0 for f in faces)
    truth = _rows(ijb.with_name("ijbc.truth.csv"))
    assert list(truth[0]) == ["file_name", "label", "subject", "template", "media", "role"]
    assert [(r["file_name"], r["template"], r["media"]) for r in truth] == [
        (f"loose_crop/{name}", tid, mid) for name, tid, mid in faces
    ]
    labels = Counter(r["label"] for r in truth)
    assert labels == dict.fromkeys((f"id{i:05d}" for i in range(N)), M)
    assert all(int(r["subject"]) == int(r["label"][2:]) + 1 for r in truth)

    by_template: dict[str, list[str]] = defaultdict(list)
    media_template: dict[str, set[str]] = defaultdict(set)
    for name, tid, mid in faces:
        by_template[tid].append(name)
        media_template[mid].add(tid)
    assert all(len(t) == 1 for t in media_template.values())  # a media lies in one template
    _identity_of_template(ijb)  # raises if a template mixes identities
    gallery = {r["template"] for r in truth if r["role"] == "gallery"}
    probes = {r["template"] for r in truth if r["role"] == "probe"}
    assert not gallery & probes and len(gallery) == N
    assert all(2 <= len(by_template[t]) <= 3 for t in gallery)
    assert all(1 <= len(by_template[t]) <= 3 for t in probes)
    assert any(len(by_template[t]) == 1 for t in probes)  # single-image templates
    frames = Counter(mid for _, _, mid in faces)
    assert max(frames.values()) in (2, 3) and Counter(frames.values())[1] > len(frames) / 2


def test_ijb_landmark_file_has_every_crop_with_12_fields(ijb: Path) -> None:
    marks = _lines(ijb / "meta" / META["landmarks"])
    assert [m[0] for m in marks] == [f"{k}.jpg" for k in range(1, N * M + 1)]
    for m in marks:
        assert len(m) == 12
        assert all(len(v.split(".")[1]) == 3 for v in m[1:11]) and len(m[11].split(".")[1]) == 6
        score = float(m[11])
        assert 0.5 <= score < 1.0
        points = np.array(m[1:11], dtype=float).reshape(5, 2)
        with Image.open(ijb / "loose_crop" / m[0]) as img:
            assert img.format == "JPEG" and img.mode == "RGB" and img.width == img.height
            side = img.width
        assert (points > 0).all() and (points < side - 1).all()
        # left eye, right eye left to right; mouth corners below the eyes (up to ±20°)
        eyes, mouth = points[:2], points[3:]
        assert mouth[:, 1].mean() > eyes[:, 1].mean()
        axis = eyes[1] - eyes[0]
        assert abs(np.degrees(np.arctan2(axis[1], axis[0]))) < MAX_ROTATION + 25
    scores = [float(m[11]) for m in marks]
    assert len(set(scores)) > len(scores) / 2  # a spread, not a constant


def test_ijb_crops_are_loose_and_faces_large(ijb: Path) -> None:
    """A crop is larger than its face: eye distance 5–40 % of the crop's side (ArcFace's 112
    crop has 31 %), the face's centre near the crop's centre."""
    for m in _lines(ijb / "meta" / META["landmarks"]):
        points = np.array(m[1:11], dtype=float).reshape(5, 2)
        with Image.open(ijb / "loose_crop" / m[0]) as img:
            side = img.width
        assert 100 <= side <= 250
        eye_distance = float(np.linalg.norm(points[1] - points[0]))
        assert 0.05 * side < eye_distance < 0.4 * side
        assert np.abs(points.mean(axis=0) / side - 0.5).max() < 0.3


def test_ijb_pairs_are_every_template_pair_labelled_by_identity(ijb: Path) -> None:
    owner = _identity_of_template(ijb)
    pairs = _lines(ijb / "meta" / META["pairs"])
    assert all(len(p) == 3 for p in pairs)
    got = [(int(a), int(b), int(label)) for a, b, label in pairs]
    assert all(a in owner and b in owner and a < b for a, b, _ in got)
    assert all(label == int(owner[a] == owner[b]) for a, b, label in got)
    # few templates: every pair of them, each once
    expected = {(a, b) for a, b in combinations(sorted(owner), 2)}
    assert [(a, b) for a, b, _ in got] != sorted(expected)  # shuffled
    assert len(got) == len(expected) and {(a, b) for a, b, _ in got} == expected
    assert 0 < sum(label for *_, label in got) < len(got)


def test_ijb_1n_lists_hold_one_gallery_template_per_identity(ijb: Path) -> None:
    owner = _identity_of_template(ijb)
    faces = {name: int(tid) for name, tid, _ in _lines(ijb / "meta" / META["faces"])}
    lists = {}
    for key in ("g1", "g2", "probes"):
        path = ijb / "meta" / META[key]
        assert path.read_text().splitlines()[0] == "TEMPLATE_ID,SUBJECT_ID,FILENAME"
        rows = _rows(path)
        for row in rows:
            tid = int(row["TEMPLATE_ID"])
            assert faces[row["FILENAME"]] == tid  # one row per image, named as in the meta
            assert int(row["SUBJECT_ID"]) == owner[tid] + 1
        lists[key] = rows
    g1 = {int(r["TEMPLATE_ID"]) for r in lists["g1"]}
    g2 = {int(r["TEMPLATE_ID"]) for r in lists["g2"]}
    probes = {int(r["TEMPLATE_ID"]) for r in lists["probes"]}
    assert not g1 & g2 and not (g1 | g2) & probes
    assert g1 | g2 | probes == set(owner)
    assert sorted(owner[t] for t in g1) == list(range(0, N, 2))  # identities alternate
    assert sorted(owner[t] for t in g2) == list(range(1, N, 2))
    assert sum(len(r) for r in lists.values()) == N * M  # every image in exactly one list
    assert {owner[t] for t in probes} == set(range(N))  # every identity has probes


def _aligned(img: Image.Image, points: np.ndarray) -> tuple[np.ndarray, float]:
    """Align as `fmlkit align --landmarks` does: grey pixels of the 112 crop, residual."""
    matrix, residual = similarity_transform(points, ARCFACE_112)
    return np.asarray(warp_affine(img, matrix, (112, 112)).convert("L"), float), residual


def _upright(identity: int, media: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The media's face as drawn (upright, before scaling, rotation and lighting) on grey,
    aligned from its drawn landmarks: grey pixels, the head-and-shoulders mask, residual."""
    ident = create_identity(seeded_rng(SEED, IDENTITY_STREAM, identity))
    layer, head, _ = draw_media_head(ident, SEED, media, 112)
    flat = Image.new("RGBA", layer.size, (128, 128, 128, 255))
    flat.alpha_composite(layer)
    pixels, residual = _aligned(flat.convert("RGB"), head.landmarks)
    alpha, _ = _aligned(layer.getchannel("A").convert("RGB"), head.landmarks)
    return pixels, alpha > 250, residual


def _corr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Pearson correlation of the pixels under ``mask``; 0 when one side is flat."""
    x, y = a[mask] - a[mask].mean(), b[mask] - b[mask].mean()
    norm = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum()) / norm if norm > 0 else 0.0


def test_ijb_landmarks_align_each_crop_onto_its_drawn_face(ijb: Path) -> None:
    """Aligned from its landmark line, each crop is the media's face as drawn: the fit's
    residual equals the drawing's own (the points are the drawing's, moved by a similarity),
    and the pixels correlate with the drawing aligned from its own points (≥ 0.7 each, median
    ≥ 0.95, despite lighting, blur, noise and JPEG), well above another identity's face or the
    same crop aligned from mirrored points."""
    truth = {r["file_name"]: r for r in _rows(ijb.with_name("ijbc.truth.csv"))}
    sames = []
    for m in _lines(ijb / "meta" / META["landmarks"]):
        row = truth[f"loose_crop/{m[0]}"]
        identity, media = int(row["label"][2:]), int(row["media"])
        points = np.array(m[1:11], dtype=float).reshape(5, 2)
        with Image.open(ijb / "loose_crop" / m[0]) as img:
            crop = img.convert("RGB")
        aligned, residual = _aligned(crop, points)
        drawn, mask, drawn_residual = _upright(identity, media)
        assert abs(residual - drawn_residual) < 0.01  # output pixels
        same = _corr(aligned, drawn, mask)
        assert same >= 0.7, m[0]
        sames.append(same)
        other_row = next(r for r in truth.values() if int(r["label"][2:]) == (identity + 1) % N)
        other, other_mask, _ = _upright((identity + 1) % N, int(other_row["media"]))
        assert _corr(aligned, other, mask & other_mask) < same - 0.2, m[0]
        mirrored, _ = _aligned(crop, points[[1, 0, 2, 4, 3]])
        assert _corr(mirrored, drawn, mask) < same - 0.3, m[0]
    assert np.median(sames) >= 0.95


def test_fmlkit_align_reads_the_landmark_file_and_aligns_every_crop(
    ijb: Path, tmp_path: Path
) -> None:
    marks = ijb / "meta" / META["landmarks"]
    out = tmp_path / "aligned"
    succeeded(fmlkit("align", ijb / "loose_crop", "-o", out, "--landmarks", marks))
    table = _rows(tmp_path / "aligned.csv")
    assert [r["file_name"] for r in table] == sorted(f"{k}.jpg" for k in range(1, N * M + 1))
    scores = {m[0]: float(m[11]) for m in _lines(marks)}
    for row in table:
        assert row["aligned"] and not row["error"], row
        assert abs(float(row["score"]) - scores[row["file_name"]]) < 1e-3
        with Image.open(out / row["aligned"]) as img:
            assert img.size == (112, 112)


def test_ijb_is_byte_identical_for_any_worker_count(ijb: Path, tmp_path: Path) -> None:
    """Also with --no-defects, which --ijb ignores; another seed changes every crop."""
    again = tmp_path / "ijbc"
    args = ("-n", str(N), "-m", str(M), "--seed", str(SEED), "--ijb", "ijbc")
    result = fmlkit("synth", again, *args, "-j", "2", "--no-defects")
    succeeded(result)
    assert "Wrote 48 IJB-C loose crops of 8 identities" in result.stdout
    assert _digest(again) == _digest(ijb)
    assert (tmp_path / "ijbc.truth.csv").read_bytes() == ijb.with_name(
        "ijbc.truth.csv"
    ).read_bytes()
    other = tmp_path / "other"
    generate_ijb(other, identities=N, images_per_identity=M, seed=SEED + 1)
    crops = [f"loose_crop/{k}.jpg" for k in range(1, N * M + 1)]
    assert not {_digest(other).get(k) for k in crops} & {_digest(ijb)[k] for k in crops}


def test_ijbb_uses_ijbb_names(tmp_path: Path) -> None:
    out = tmp_path / "b"
    result = fmlkit("synth", out, "-n", "3", "-m", "3", "--ijb", "ijbb")
    succeeded(result)
    assert "IJB-B loose crops" in result.stdout
    assert sorted(p.name for p in (out / "meta").iterdir()) == [
        "ijbb_1N_gallery_S1.csv",
        "ijbb_1N_gallery_S2.csv",
        "ijbb_1N_probe_mixed.csv",
        "ijbb_face_tid_mid.txt",
        "ijbb_name_5pts_score.txt",
        "ijbb_template_pair_label.txt",
    ]
    assert len(_lines(out / "meta" / "ijbb_face_tid_mid.txt")) == 9


def test_ijb_options_are_checked(tmp_path: Path) -> None:
    out = tmp_path / "x"
    for args, says in (
        (("-n", "4", "-m", "2"), ["-m ≥ 3", "-m 2"]),
        (("-n", "1", "-m", "5"), ["-n ≥ 2", "-n 1"]),
        (("-n", "4", "-m", "4", "--scenes"), ["--ijb", "--scenes"]),
        (("-n", "4", "-m", "4", "--label-noise"), ["--ijb", "--label-noise"]),
        (("-n", "4", "-m", "4", "--landmarks", tmp_path / "l.csv"), ["--ijb", "--landmarks"]),
    ):
        refused(fmlkit("synth", out, *args, "--ijb", "ijbc"), says=says, code=2)
    refused(fmlkit("synth", out, "-n", "4", "-m", "4", "--ijb", "ijbx"), says="ijbx", code=2)
    nothing_complete(out, tmp_path / "x.truth.csv")
    with pytest.raises(InputError, match="3 images per identity"):
        generate_ijb(out, identities=4, images_per_identity=2)
    with pytest.raises(InputError, match="ijbb, ijbc"):
        generate_ijb(out, identities=4, images_per_identity=4, kind="IJBC")
    assert not out.exists()


def test_ijb_replaces_only_its_own_outputs(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    args = ("synth", out, "-n", "2", "-m", "3", "--ijb", "ijbc")
    refused(fmlkit(*args), says=["mine", "exists"])
    refused(fmlkit(*args, "--overwrite"), says=["notes.txt", "not written by synth"])
    assert (out / "notes.txt").read_text() == "keep me"
    ok = ("synth", tmp_path / "t", "-n", "2", "-m", "3", "--ijb", "ijbc")
    succeeded(fmlkit(*ok))
    refused(fmlkit(*ok), says="exists")
    succeeded(fmlkit(*ok, "--overwrite", "--seed", "1"))  # its own outputs: replaced
    plain = ("synth", tmp_path / "t", "-n", "2", "-m", "3", "--overwrite")
    refused(fmlkit(*plain), says=["loose_crop", "not written by synth"])  # not a plain tree


def test_ijb_killed_half_way_leaves_nothing_complete(tmp_path: Path) -> None:
    out = tmp_path / "k"
    args = ("-q", "synth", out, "-n", "2", "-m", "3", "--ijb", "ijbc")
    killed = fmlkit_process(*args, env={FAULT_ENV: "written@k"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    nothing_complete(out, tmp_path / "k.truth.csv")
    succeeded(fmlkit(*args[1:]))


def test_ijb_meeting_a_full_disk_fails_cleanly_and_keeps_the_previous_output(
    tmp_path: Path,
) -> None:
    """As tests/hostile/test_disk_full.py does for the other writers: a file-size limit
    (``ulimit -f``) half the largest file's size; workers write the crops."""
    args = ("synth", "data", "-n", "4", "-m", "3", "--ijb", "ijbc", "-j", "2", "--overwrite")
    succeeded(fmlkit(*args, cwd=tmp_path))
    outputs = (tmp_path / "data", tmp_path / "data.truth.csv")
    before = _digest(tmp_path)
    inodes = {p: p.stat().st_ino for p in outputs}
    limit = max(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()) // 2

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run(
        [sys.executable, "-m", "fmlkit", *args],
        cwd=tmp_path,
        preexec_fn=cap,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    refused(result, says=["data", "File too large"])
    assert _digest(tmp_path) == before and {p: p.stat().st_ino for p in outputs} == inodes
    # no temporary entry left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "data.truth.csv"]


def test_plan_pairs_samples_imposters_beyond_the_pair_limit() -> None:
    """Over `MAX_PAIRS` template pairs: every genuine pair, and distinct imposter pairs up to
    `MAX_PAIRS` in all; the same plan for the same generator state."""
    templates = plan_templates(np.random.default_rng(1), 150, 10)
    assert len(templates) * (len(templates) - 1) // 2 > MAX_PAIRS
    owner = {t.id: t.identity for t in templates}
    genuine = {
        (a.id, b.id) for a, b in combinations(templates, 2) if a.identity == b.identity
    }  # ids increase along the list
    pairs = plan_pairs(np.random.default_rng(2), templates)
    assert len(pairs) == MAX_PAIRS and len({(a, b) for a, b, _ in pairs}) == MAX_PAIRS
    assert all(a < b and label == int(owner[a] == owner[b]) for a, b, label in pairs)
    assert {(a, b) for a, b, label in pairs if label} == genuine
    assert pairs == plan_pairs(np.random.default_rng(2), templates)
