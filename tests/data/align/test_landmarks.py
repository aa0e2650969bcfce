"""Each landmark format is read from its content; a malformed line is an error naming it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fmlkit.data.align.landmarks import read_landmarks
from fmlkit.errors import InputError

POINTS = [70.0, 100.0, 110.0, 99.0, 90.0, 120.0, 74.0, 140.0, 107.0, 139.0]
TEXT = " ".join(f"{v:g}" for v in POINTS)
CSV = ",".join(f"{v:g}" for v in POINTS)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "marks.txt"
    path.write_text(text, encoding="utf-8")
    return path


def test_read_landmarks_vggface2(tmp_path: Path) -> None:
    header = '"NAME_ID","P1X","P1Y","P2X","P2Y","P3X","P3Y","P4X","P4Y","P5X","P5Y"'
    path = _write(tmp_path, f'{header}\n"n000002/0001_01",{CSV}\n"n000002/0002_01",{CSV}\n')
    marks = read_landmarks(path)
    assert marks.format == "vggface2" and len(marks.faces) == 2
    key, faces = marks.lookup("n000002/0001_01.jpg") or ("", [])
    assert key == "n000002/0001_01"
    assert np.array_equal(faces[0].landmarks, np.reshape(POINTS, (5, 2)))
    assert faces[0].score == 1.0


def test_read_landmarks_lfw_and_insightface(tmp_path: Path) -> None:
    lfw = read_landmarks(_write(tmp_path, f"Aaron_Eckhart/Aaron_Eckhart_0001.jpg {TEXT}\n\n"))
    assert lfw.format == "lfw"
    assert lfw.lookup("Aaron_Eckhart/Aaron_Eckhart_0001.jpg") is not None
    ijb = read_landmarks(_write(tmp_path, f"img/1.jpg {TEXT} 0.25\nimg/2.jpg {TEXT} 0.99\n"))
    assert ijb.format == "insightface"
    assert [f.score for f in ijb.faces["img/1.jpg"]] == [0.25]


def test_read_landmarks_csv_ignores_extra_columns_and_groups_faces(tmp_path: Path) -> None:
    header = "label,file_name,box_x1,x1,y1,x2,y2,x3,y3,x4,y4,x5,y5,score"
    path = _write(tmp_path, f"{header}\nA,a/1.png,3,{CSV},0.1\nA,a/1.png,4,{CSV},0.2\n")
    marks = read_landmarks(path)
    assert marks.format == "csv"
    faces = marks.faces["a/1.png"]
    assert len(faces) == 2 and all(f.score == 1.0 for f in faces)


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        (f"a.jpg {TEXT}\nb.jpg {TEXT[:-4]}\n", 2, "fields"),
        (f"a.jpg {TEXT}\n\nb.jpg {TEXT.replace('90', 'ninety')}\n", 3, "'ninety' is not a number"),
        (
            f"file_name,{','.join(f'{a}{i}' for i in range(1, 6) for a in 'xy')}\na.jpg,{CSV},7\n",
            2,
            "fields",
        ),
        (f"a.jpg {TEXT} 0.5 extra\n", 1, "13 fields"),
        ("file_name,x1,y1\na.jpg,1,2\n", 1, "header"),
    ],
)
def test_read_landmarks_names_the_malformed_line(
    tmp_path: Path, text: str, line: int, says: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as caught:
        read_landmarks(path)
    message = str(caught.value)
    assert f"{path} line {line}:" in message and says in message


def test_read_landmarks_refuses_an_empty_or_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="empty"):
        read_landmarks(_write(tmp_path, "\n \n"))
    with pytest.raises(InputError, match="cannot read"):
        read_landmarks(tmp_path / "absent.txt")
