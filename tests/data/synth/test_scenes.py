from __future__ import annotations

import csv
import hashlib
import math
import signal
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from fmlkit import columns as C
from fmlkit.data.synth.draw import seeded_rng
from fmlkit.data.synth.faces import _clothes, _darker, _draw_head, create_identity
from fmlkit.data.synth.scene_draw import MAX_ROTATION, _pillow_inverse, _similarity, render_scene
from fmlkit.data.synth.scenes import FACE_COUNT_RATES, generate_scenes
from fmlkit.errors import InputError
from fmlkit.io import FAULT_ENV
from tests.hostile.check import fmlkit, fmlkit_process, nothing_complete, refused, succeeded


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 identities × 10 photos of 200×150, seed 3, with broken files."""
    out = tmp_path_factory.mktemp("scenes") / "photos"
    generate_scenes(out, identities=10, images_per_identity=10, seed=3, scene_size=(200, 150))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_pillow_inverse_puts_a_pixel_where_the_matrix_says(seed: int) -> None:
    """The paste's half-pixel convention: a lone pixel at (x, y) of the drawing lands, by
    bilinear weight, exactly at matrix · (x, y) in the scene (pixel centres at integers)."""
    rng = np.random.default_rng(seed)
    layer = np.zeros((40, 40), np.uint8)
    x, y = (int(v) for v in rng.integers(15, 25, size=2))
    layer[y, x] = 255
    matrix = _similarity(
        rng.uniform(1.5, 3.0), rng.uniform(-30, 30), np.array([20.0, 20.0]), np.array([60.0, 50.0])
    )
    out = Image.fromarray(layer).transform(
        (120, 100), Image.Transform.AFFINE, _pillow_inverse(matrix), Image.Resampling.BILINEAR
    )
    weights = np.asarray(out, dtype=np.float64)
    ys, xs = np.mgrid[: out.height, : out.width]
    centroid = np.array([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()
    assert np.abs(centroid - matrix @ [x, y, 1]).max() < 0.05


@pytest.mark.parametrize("seed", range(40))
def test_drawn_landmarks_lie_on_the_drawn_features(seed: int) -> None:
    """In the face's own drawing: each eye point is inside its iris (or on the closed lid), the
    nose point at the base of the nose, each mouth point at the end of the lips."""
    ident = create_identity(seeded_rng(seed, 1, 0))
    layer = _clothes(ident, 224).copy()
    head = _draw_head(ImageDraw.Draw(layer), ident, seeded_rng(seed, 2, 0), 224)
    pixels = np.asarray(layer.convert("RGB"))
    mole = _darker(ident.skin, 0.45)

    def colours_near(point: np.ndarray, radius: int) -> set[tuple[int, ...]]:
        x, y = (round(float(v)) for v in point)
        patch = pixels[y - radius : y + radius + 1, x - radius : x + radius + 1]
        return {tuple(int(c) for c in p) for p in patch.reshape(-1, 3)}

    eye_colours = {ident.iris, (10, 10, 10), _darker(ident.skin, 0.4), mole}
    for eye in head.landmarks[:2]:
        assert colours_near(eye, 0) <= eye_colours
    assert {_darker(ident.skin, 0.82), mole} & colours_near(head.landmarks[2] - (0, 1), 0)
    for corner in head.landmarks[3:]:
        assert {ident.lips, (60, 20, 25), mole} & colours_near(corner, 2)
    assert (
        head.landmarks[0, 0] < head.landmarks[1, 0] and head.landmarks[3, 0] < head.landmarks[4, 0]
    )


@pytest.mark.parametrize("seed", range(10))
def test_scene_landmarks_map_back_onto_the_drawing(seed: int) -> None:
    identities = [create_identity(seeded_rng(seed, 1, k)) for k in range(3)]
    img, faces = render_scene(identities, seeded_rng(seed, 6), scene_size=(320, 240))
    assert img.size == (320, 240) and 1 <= len(faces) <= 3
    for face in faces:
        a, t = face.matrix[:, :2], face.matrix[:, 2]
        back = (face.landmarks - t) @ np.linalg.inv(a).T
        assert np.abs(back - face.canonical).max() < 0.5
        degrees = math.degrees(math.atan2(a[1, 0], a[0, 0]))
        assert abs(degrees) <= MAX_ROTATION
        x1, y1, x2, y2 = face.box
        assert 0 <= x1 < x2 < 320 and 0 <= y1 < y2 < 240
        assert (face.landmarks >= (x1, y1)).all() and (face.landmarks <= (x2, y2)).all()

    def area(box: tuple[float, float, float, float]) -> float:
        return (box[2] - box[0]) * (box[3] - box[1])

    for stranger in faces[1:]:  # smaller than the labelled face: `--select largest` finds it
        assert area(stranger.box) < area(faces[0].box)


def _off_segment(colour: np.ndarray, a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """Distance of ``colour`` from the RGB segment a–b (a blend of the two)."""
    u, v = np.array(a, float), np.array(b, float)
    t = np.clip((colour - u) @ (v - u) / max(1.0, float((v - u) @ (v - u))), 0, 1)
    return float(np.linalg.norm(colour - (u + t * (v - u))))


@pytest.mark.parametrize("seed", range(20))
def test_scene_pixels_at_the_eyes_are_the_eyes(seed: int) -> None:
    """On the photo itself (before lighting and noise): at each true eye point of a large face,
    the pixel is the iris, the pupil or a blend of the two (the closed lid's line if blinking,
    a mole if one is drawn there)."""
    ident = create_identity(seeded_rng(seed, 1, 0))
    img, (face,) = render_scene(
        [ident], seeded_rng(seed, 6), scene_size=(640, 480), face_size=224, photometric=False
    )
    pixels = np.asarray(img, dtype=np.float64)
    lid, mole = _darker(ident.skin, 0.4), _darker(ident.skin, 0.45)  # a mole may cover it
    colours = [(10, 10, 10), ident.iris, lid, mole]
    for x, y in face.landmarks[:2]:
        colour = pixels[round(y), round(x)]
        off = min(_off_segment(colour, a, b) for a in colours for b in colours)
        assert off <= 6, (colour, colours)


def test_photo_counts_and_truth_agree(scenes: Path) -> None:
    truth = _rows(scenes.with_name("photos.truth.csv"))
    marks = _rows(scenes.with_name("photos.landmarks.csv"))
    assert list(truth[0]) == list(C.SCENE_TRUTH_COLUMNS)
    assert list(marks[0]) == list(C.SCENE_LANDMARK_COLUMNS)
    assert set(_digest(scenes)) == {row["file_name"] for row in truth}
    photos = [row for row in truth if row["kind"] == "clean"]
    assert len(photos) == 100 and Counter(r["label"] for r in photos) == dict.fromkeys(
        [f"id{i:05d}" for i in range(10)], 10
    )
    broken = Counter(row["kind"] for row in truth if row["kind"] != "clean")
    assert broken == {"tiny": 1, "corrupt": 1, "empty": 1, "not_image": 1}
    by_file = defaultdict(list)
    for row in marks:
        by_file[row["file_name"]].append(row)
    for row in photos:
        faces = by_file.get(row["file_name"], [])
        assert int(row["faces"]) == len(faces)
        assert [f["face"] for f in faces] == [str(k) for k in range(len(faces))]
        if faces:
            assert faces[0]["label"] == row["label"] and all(not f["label"] for f in faces[1:])
    count = Counter(int(row["faces"]) for row in photos)
    assert count[0] == math.ceil(FACE_COUNT_RATES[0] * 100)  # exact: a photo never loses its face
    assert count[2] > 0 and count[3] > 0 and count[1] > 50
    # a stranger with no free place is left out: at most a few
    assert count[2] + count[3] >= math.ceil(0.25 * 100) - 3


def test_scenes_are_byte_identical_for_any_worker_count(scenes: Path, tmp_path: Path) -> None:
    again = tmp_path / "photos"
    generate_scenes(
        again, identities=10, images_per_identity=10, seed=3, scene_size=(200, 150), workers=2
    )
    assert _digest(again) == _digest(scenes)
    for suffix in (".truth.csv", ".landmarks.csv"):
        assert (tmp_path / f"photos{suffix}").read_bytes() == scenes.with_name(
            f"photos{suffix}"
        ).read_bytes()
    other = tmp_path / "other"
    generate_scenes(other, identities=10, images_per_identity=10, seed=4, scene_size=(200, 150))
    firsts = [f"id{i:05d}/0000.jpg" for i in range(10)]
    assert not {_digest(other)[k] for k in firsts} & {_digest(scenes)[k] for k in firsts}


def test_align_from_the_scene_landmarks_aligns_every_face_photo(
    scenes: Path, tmp_path: Path
) -> None:
    """The landmark CSV is what `fmlkit align --landmarks` reads: every photo with a face gives
    a crop, the rest a row with a reason."""
    marks = scenes.with_name("photos.landmarks.csv")
    succeeded(fmlkit("align", scenes, "--landmarks", marks, "-o", tmp_path / "al"))
    table = {row["file_name"]: row for row in _rows(tmp_path / "al.csv")}
    truth = _rows(scenes.with_name("photos.truth.csv"))
    assert set(table) == {row["file_name"] for row in truth}
    for row in truth:
        got = table[row["file_name"]]
        if row["faces"] not in ("", "0"):
            assert got["aligned"] and not got["error"], got
            # output px: the drawn faces' proportions are not the template's (mouth lower)
            assert float(got["residual"]) < 10
        else:
            assert not got["aligned"] and got["error"], got


def test_scene_options_are_checked(tmp_path: Path) -> None:
    refused(
        fmlkit("synth", tmp_path / "a", "-n", "1", "-m", "1", "--scene-size", "100x100"),
        says="--scene-size needs --scenes",
        code=2,
    )
    refused(
        fmlkit("synth", tmp_path / "a", "-n", "1", "-m", "1", "--scenes", "--scene-size", "9x9"),
        says=["--scene-size", "WIDTHxHEIGHT"],
        code=2,
    )
    with pytest.raises(InputError, match="scene size"):
        generate_scenes(tmp_path / "a", identities=1, images_per_identity=1, scene_size=(10, 99))
    inside = tmp_path / "a" / "marks.csv"
    refused(
        fmlkit("synth", tmp_path / "a", "-n", "1", "-m", "1", "--scenes", "--landmarks", inside),
        says=["marks.csv", "must not be inside"],
    )
    nothing_complete(tmp_path / "a", tmp_path / "a.truth.csv")


def test_scenes_replace_only_their_own_landmark_file(tmp_path: Path) -> None:
    mine = tmp_path / "notes.csv"
    mine.write_text("my,own,notes\n")
    args = ("synth", tmp_path / "s", "-n", "1", "-m", "2", "--scenes", "--landmarks", mine)
    refused(fmlkit(*args), says=["notes.csv", "exists"])
    refused(fmlkit(*args, "--overwrite"), says=["notes.csv", "not written by synth"])
    assert mine.read_text() == "my,own,notes\n"
    nothing_complete(tmp_path / "s")
    ok = ("synth", tmp_path / "t", "-n", "1", "-m", "2", "--scenes")
    succeeded(fmlkit(*ok))
    succeeded(fmlkit(*ok, "--overwrite", "--seed", "1"))  # its own outputs: replaced


def test_scenes_killed_half_way_leave_nothing_complete(tmp_path: Path) -> None:
    out = tmp_path / "s"
    args = ("-q", "synth", out, "-n", "2", "-m", "2", "--scenes")
    killed = fmlkit_process(*args, env={FAULT_ENV: "written@s"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    nothing_complete(out, tmp_path / "s.truth.csv", tmp_path / "s.landmarks.csv")
    succeeded(fmlkit(*args[1:]))
