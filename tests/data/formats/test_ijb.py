"""IJB-B/IJB-C meta files: a small folder written in tmp_path, read back, and every bad input
refused with a message naming the file (and line)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fmlkit.data.formats.ijb import find_ijb, read_ijb
from fmlkit.errors import InputError

FACES = [("1.jpg", 1, 10), ("2.jpg", 1, 10), ("3.jpg", 1, 11), ("4.jpg", 2, 12), ("5.jpg", 3, 13)]
PAIRS = "1 2 1\n1 3 0\n2 3 0\n"


def _landmark_line(i: int, name: str) -> str:
    points = " ".join(f"{10 * i + k}.5" for k in range(10))
    return f"{name} {points} 0.{i + 1}\n"


def _ijb(
    root: Path,
    kind: str = "ijbc",
    *,
    faces: str | None = None,
    landmarks: str | None = None,
    pairs: str = PAIRS,
    one_to_n: dict[str, str] | None = None,
    meta_folder: bool = True,
) -> Path:
    """An IJB folder: loose_crop/ and meta/ (or the meta files in root) with 5 images in 3
    templates; ``one_to_n`` maps 1:N file suffixes (``gallery_G1``) to their text."""
    meta = root / "meta" if meta_folder else root
    meta.mkdir(parents=True, exist_ok=True)
    (root / "loose_crop").mkdir(exist_ok=True)
    if faces is None:
        faces = "".join(f"{n} {t} {m}\n" for n, t, m in FACES)
    if landmarks is None:
        landmarks = "".join(_landmark_line(i, n) for i, (n, _, _) in enumerate(FACES))
    (meta / f"{kind}_face_tid_mid.txt").write_text(faces)
    (meta / f"{kind}_name_5pts_score.txt").write_text(landmarks)
    (meta / f"{kind}_template_pair_label.txt").write_text(pairs)
    for suffix, text in (one_to_n or {}).items():
        (meta / f"{kind}_1N_{suffix}.csv").write_text(text)
    return root


def _one_to_n(kind: str = "ijbc") -> dict[str, str]:
    header = "TEMPLATE_ID,SUBJECT_ID,FILENAME\n"
    first, second = ("G1", "G2") if kind == "ijbc" else ("S1", "S2")
    return {
        f"gallery_{first}": header + "1,100,a.jpg\n1,100,b.jpg\n",
        f"gallery_{second}": header + "2,200,c.jpg\n",
        "probe_mixed": header + "3,100,d.jpg\n2,200,e.jpg\n3,100,f.jpg\n",
    }


def test_read_ijb_reads_every_file(tmp_path: Path) -> None:
    protocol = read_ijb(_ijb(tmp_path, one_to_n=_one_to_n()))
    assert protocol.kind == "ijbc" and protocol.meta == tmp_path / "meta"
    assert protocol.crops == tmp_path / "loose_crop"
    assert protocol.images.tolist() == [n for n, _, _ in FACES]
    assert protocol.templates.tolist() == [1, 1, 1, 2, 3] and protocol.templates.dtype == np.int64
    assert protocol.medias.tolist() == [10, 10, 11, 12, 13]
    assert protocol.landmarks.shape == (5, 5, 2) and protocol.landmarks.dtype == np.float64
    assert protocol.landmarks[2].tolist() == [[20.5, 21.5], [22.5, 23.5], [24.5, 25.5],
                                              [26.5, 27.5], [28.5, 29.5]]  # fmt: skip
    np.testing.assert_allclose(protocol.detector_scores, [0.1, 0.2, 0.3, 0.4, 0.5], rtol=1e-6)
    assert protocol.pairs.tolist() == [[1, 2], [1, 3], [2, 3]] and protocol.pairs.dtype == np.int64
    assert protocol.labels.tolist() == [1, 0, 0] and protocol.labels.dtype == np.int8
    assert {k: (t.tolist(), s.tolist()) for k, (t, s) in protocol.galleries.items()} == {
        "G1": ([1], [100]),
        "G2": ([2], [200]),
    }
    assert protocol.probes is not None
    assert [a.tolist() for a in protocol.probes] == [[2, 3], [200, 100]]


def test_read_ijb_ijbb_without_meta_folder_and_without_1n(tmp_path: Path) -> None:
    protocol = read_ijb(_ijb(tmp_path, "ijbb", meta_folder=False))
    assert protocol.kind == "ijbb" and protocol.meta == tmp_path
    assert protocol.galleries == {} and protocol.probes is None
    assert find_ijb(tmp_path) == ("ijbb", tmp_path)


def test_read_ijb_ijbb_galleries_are_s1_s2(tmp_path: Path) -> None:
    protocol = read_ijb(_ijb(tmp_path, "ijbb", one_to_n=_one_to_n("ijbb")))
    assert sorted(protocol.galleries) == ["S1", "S2"]


def test_read_ijb_matches_landmarks_by_name_in_any_order(tmp_path: Path) -> None:
    lines = [_landmark_line(i, n) for i, (n, _, _) in enumerate(FACES)]
    extra = _landmark_line(9, "other.jpg")
    protocol = read_ijb(_ijb(tmp_path, landmarks="".join([extra, *reversed(lines)])))
    assert protocol.landmarks[0, 0].tolist() == [0.5, 1.5]
    np.testing.assert_allclose(protocol.detector_scores, [0.1, 0.2, 0.3, 0.4, 0.5], rtol=1e-6)


def test_read_ijb_takes_tabs_blank_lines_and_crlf(tmp_path: Path) -> None:
    faces = "".join(f"{n}\t{t}  {m} \r\n\n" for n, t, m in FACES)  # pandas' reader refuses
    protocol = read_ijb(_ijb(tmp_path, faces=faces, pairs="1\t2  1\r\n\n1 3 0 \r\n"))
    assert protocol.pairs.tolist() == [[1, 2], [1, 3]] and protocol.labels.tolist() == [1, 0]
    assert protocol.images.tolist() == [n for n, _, _ in FACES]
    assert protocol.medias.tolist() == [m for _, _, m in FACES]


def test_read_ijb_keeps_names_pandas_would_read_as_missing(tmp_path: Path) -> None:
    faces = "NA 1 1\nnull 2 2\n"
    landmarks = _landmark_line(0, "null") + _landmark_line(1, "NA")
    protocol = read_ijb(_ijb(tmp_path, faces=faces, landmarks=landmarks, pairs="1 2 0\n"))
    assert protocol.images.tolist() == ["NA", "null"]
    assert protocol.detector_scores.tolist() == pytest.approx([0.2, 0.1])


def test_read_ijb_crops_optional(tmp_path: Path) -> None:
    root = _ijb(tmp_path)
    (root / "loose_crop").rmdir()
    with pytest.raises(InputError, match="no loose_crop/ folder"):
        read_ijb(root)
    assert read_ijb(root, crops=False).images.size == 5


def test_find_ijb_refuses_neither_and_both(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        find_ijb(tmp_path / "absent")
    (tmp_path / "meta").mkdir()
    with pytest.raises(InputError, match=r"found neither .*ijbb_face_tid_mid.txt nor ijbc_"):
        find_ijb(tmp_path)
    _ijb(tmp_path, "ijbb")
    _ijb(tmp_path, "ijbc")
    with pytest.raises(InputError, match="holds both"):
        find_ijb(tmp_path)


@pytest.mark.parametrize("name", ["ijbc_name_5pts_score.txt", "ijbc_template_pair_label.txt"])
def test_read_ijb_names_a_missing_meta_file(tmp_path: Path, name: str) -> None:
    root = _ijb(tmp_path)
    (root / "meta" / name).unlink()
    with pytest.raises(InputError, match=f"meta file .*{name} is missing"):
        read_ijb(root)


BAD_PAIRS = [
    ("1 2 1\n1 3\n", 2, "1 3", "3 fields, found 2"),
    ("1 2 1\n\n1 3 0 7\n", 3, "1 3 0 7", "3 fields, found 4"),
    ("1 2 1\n1 x 0\n", 2, "1 x 0", "'x' is not an integer"),
    ("1 2 1\n1 3 2\n", 2, "1 3 2", "label '2' is not 0 or 1"),
    ("1 2 -1\n", 1, "1 2 -1", "label '-1' is not 0 or 1"),
    ("1 2 1\n\n\n1 3 5\n", 4, "1 3 5", "label '5' is not 0 or 1"),
    (
        "1 2 1\n1 99999999999999999999 0\n",
        2,
        "1 99999999999999999999 0",
        "'99999999999999999999' is out of the 64-bit integer range",
    ),
]


@pytest.mark.parametrize(("text", "line", "found", "why"), BAD_PAIRS)
def test_read_ijb_names_file_and_line_of_a_malformed_pair(
    tmp_path: Path, text: str, line: int, found: str, why: str
) -> None:
    root = _ijb(tmp_path, pairs=text)
    with pytest.raises(InputError) as error:
        read_ijb(root)
    path = root / "meta" / "ijbc_template_pair_label.txt"
    assert str(error.value) == (
        f'{path}:{line}: expected "template_a template_b label", found "{found}" ({why})'
    )


@pytest.mark.parametrize(
    ("faces", "line", "why"),
    [
        ("1.jpg 1 10\n2.jpg 1\n", 2, "3 fields, found 2"),
        ("1.jpg 1 10\n2.jpg one 10\n", 2, "'one' is not an integer"),
        ("1.jpg 1 10\n2.jpg 1 1.5\n", 2, "'1.5' is not an integer"),
    ],
)
def test_read_ijb_names_file_and_line_of_a_malformed_face(
    tmp_path: Path, faces: str, line: int, why: str
) -> None:
    root = _ijb(tmp_path, faces=faces)
    with pytest.raises(InputError, match=rf"ijbc_face_tid_mid.txt:{line}: expected "
                       rf'"image_name template_id media_id", found .*\({why}\)'):  # fmt: skip
        read_ijb(root)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("nan", "'nan' is not a finite number"),
        ("inf", "'inf' is not a finite"),
        ("1,5", "'1,5' is not a number"),
    ],
)
@pytest.mark.parametrize("column", [3, 11])  # a landmark, the detector score
def test_read_ijb_refuses_a_bad_landmark_or_score(
    tmp_path: Path, value: str, why: str, column: int
) -> None:
    lines = [_landmark_line(i, n) for i, (n, _, _) in enumerate(FACES)]
    fields = lines[3].split()
    fields[column] = value
    lines[3] = " ".join(fields) + "\n"
    root = _ijb(tmp_path, landmarks="".join(lines))
    expected = (
        rf'score.txt:4: expected "image_name x1 y1 .* detector_score", found "4.jpg .*\({why}'
    )
    with pytest.raises(InputError, match=expected):
        read_ijb(root)


def test_read_ijb_refuses_a_landmark_line_of_11_fields(tmp_path: Path) -> None:
    landmarks = "".join(_landmark_line(i, n) for i, (n, _, _) in enumerate(FACES))
    root = _ijb(tmp_path, landmarks=landmarks.replace(" 0.3\n", "\n"))
    with pytest.raises(InputError, match=r"score.txt:3: .*\(12 fields, found 11\)"):
        read_ijb(root)


def test_read_ijb_refuses_a_pair_with_an_unknown_template(tmp_path: Path) -> None:
    root = _ijb(tmp_path, pairs="1 2 1\n\n2 3 0\n3 7 0\n8 1 1\n")
    with pytest.raises(InputError) as error:
        read_ijb(root)
    path = root / "meta" / "ijbc_template_pair_label.txt"
    assert str(error.value) == (
        f"{path}:4: template 7 has no image in face_tid_mid (2 pair(s) name unknown templates)"
    )


@pytest.mark.parametrize("scale", [1, 10**12])  # a lookup table, a binary search
def test_read_ijb_checks_pair_templates_over_any_id_range(tmp_path: Path, scale: int) -> None:
    faces = "".join(f"{n} {t * scale} {m}\n" for n, t, m in FACES)
    pairs = f"{scale} {3 * scale} 1\n{2 * scale} {scale} 0\n"
    protocol = read_ijb(_ijb(tmp_path, faces=faces, pairs=pairs))
    assert protocol.pairs.tolist() == [[scale, 3 * scale], [2 * scale, scale]]
    bad = pairs + f"{scale} {4 * scale} 0\n0 {scale} 1\n"
    with pytest.raises(
        InputError, match=rf"label.txt:3: template {4 * scale} has no image .*\(2 pair"
    ):
        read_ijb(_ijb(tmp_path, faces=faces, pairs=bad))


def test_read_ijb_refuses_images_missing_from_the_landmark_file(tmp_path: Path) -> None:
    landmarks = "".join(_landmark_line(i, n) for i, (n, _, _) in enumerate(FACES[:1]))
    root = _ijb(tmp_path, landmarks=landmarks)
    with pytest.raises(InputError) as error:
        read_ijb(root)
    assert str(error.value).startswith(
        "4 image(s) of face_tid_mid have no landmarks in "
        f"{root / 'meta' / 'ijbc_name_5pts_score.txt'} (e.g. 2.jpg, 3.jpg, 4.jpg)"
    )


@pytest.mark.parametrize("pairs", ["", "\n\n"])
def test_read_ijb_refuses_an_empty_pair_list(tmp_path: Path, pairs: str) -> None:
    with pytest.raises(InputError, match=r"ijbc_template_pair_label.txt lists no template pair"):
        read_ijb(_ijb(tmp_path, pairs=pairs))


def test_read_ijb_refuses_no_images(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"ijbc_face_tid_mid\.txt lists no image"):
        read_ijb(_ijb(tmp_path, faces=""))


def test_read_ijb_refuses_duplicated_image_names(tmp_path: Path) -> None:
    faces = "1.jpg 1 1\n2.jpg 1 1\n1.jpg 2 2\n"
    with pytest.raises(
        InputError, match=r"face_tid_mid.txt names 1 image\(s\) more than once \(e.g. 1.jpg\)"
    ):
        read_ijb(_ijb(tmp_path, faces=faces))
    landmarks = "".join(_landmark_line(i, n) for i, (n, _, _) in enumerate(FACES))
    with pytest.raises(
        InputError, match=r"score.txt names 1 image\(s\) more than once \(e.g. 5.jpg\)"
    ):
        read_ijb(_ijb(tmp_path, landmarks=landmarks + _landmark_line(7, "5.jpg")))


def test_read_ijb_refuses_some_of_the_1n_files(tmp_path: Path) -> None:
    files = _one_to_n()
    del files["gallery_G2"], files["probe_mixed"]
    with pytest.raises(InputError, match=r"only some of the 1:N files: ijbc_1N_gallery_G2.csv, "
                       r"ijbc_1N_probe_mixed.csv missing"):  # fmt: skip
        read_ijb(_ijb(tmp_path, one_to_n=files))


def test_read_ijb_refuses_a_1n_template_with_two_subjects(tmp_path: Path) -> None:
    files = _one_to_n()
    files["probe_mixed"] += "3,101,g.jpg\n"
    with pytest.raises(
        InputError, match=r"probe_mixed.csv: template 3 has two subjects \(100 and 101\)"
    ):
        read_ijb(_ijb(tmp_path, one_to_n=files))


def test_read_ijb_refuses_a_1n_template_absent_from_face_tid_mid(tmp_path: Path) -> None:
    files = _one_to_n()
    files["gallery_G2"] += "9,900,z.jpg\n"
    with pytest.raises(InputError, match=r"gallery_G2.csv: 1 template\(s\) have no image .*9"):
        read_ijb(_ijb(tmp_path, one_to_n=files))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("SUBJECT_ID,TEMPLATE_ID\n1,100\n", r"gallery_G1.csv:1: expected \"TEMPLATE_ID,SUBJECT_ID"),
        ("TEMPLATE_ID,SUBJECT_ID\n1,100\n1,x\n", r"gallery_G1.csv:3: expected .*found \"1,x\""),
        ("TEMPLATE_ID,SUBJECT_ID\n1\n", r"gallery_G1.csv:2: expected .*found \"1\""),
        ("TEMPLATE_ID,SUBJECT_ID\n", r"gallery_G1.csv lists no template"),
    ],
)
def test_read_ijb_refuses_a_malformed_1n_file(tmp_path: Path, text: str, match: str) -> None:
    files = _one_to_n()
    files["gallery_G1"] = text
    with pytest.raises(InputError, match=match):
        read_ijb(_ijb(tmp_path, one_to_n=files))
