"""Pair lists told apart by content (CSV, LFW pairs.txt, InsightFace .bin) and their files found
under a root, with every name that leads outside it refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from fmlkit.data.formats.insightface_bin import write_bin
from fmlkit.errors import FormatError, InputError
from fmlkit.eval.pair_sources import load_pairs, locate_files, pair_positions

LFW = "2\t1\nAnn\t1\t2\nAnn\t1\tBob\t3\nBob\t2\t3\nBob\t1\tCy\t12\n"
CSV = (
    "1,Ann/Ann_0001.jpg,Ann/Ann_0002.jpg\n0,Ann/Ann_0001.jpg,Bob/Bob_0003.jpg\n"
    "1,Bob/Bob_0002.jpg,Bob/Bob_0003.jpg\n0,Bob/Bob_0001.jpg,Cy/Cy_0012.jpg\n"
)


def test_load_pairs_reads_lfw_and_csv_by_content_not_extension(tmp_path: Path) -> None:
    (tmp_path / "lfw.csv").write_text(LFW)  # an LFW list named .csv …
    (tmp_path / "list.txt").write_text(CSV)  # … and a CSV named .txt
    lfw, csv = load_pairs(tmp_path / "lfw.csv"), load_pairs(tmp_path / "list.txt")
    assert (lfw.source, csv.source) == ("lfw", "csv")
    assert (lfw.name, csv.name) == ("lfw", "list")
    assert lfw.first.tolist() == csv.first.tolist()
    assert lfw.second.tolist() == csv.second.tolist()
    assert lfw.same.tolist() == csv.same.tolist() == [True, False, True, False]
    assert lfw.images is None and lfw.files[:2] == ["Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg"]


@pytest.mark.parametrize("protocol", [0, 1, 2, 4])
def test_load_pairs_reads_a_bin_of_any_protocol(tmp_path: Path, protocol: int) -> None:
    images = [bytes([i + 1]) * 5 for i in range(6)]
    write_bin(tmp_path / "agedb.txt", images, [True, False, True], protocol=protocol)
    pairs = load_pairs(tmp_path / "agedb.txt")
    assert pairs.source == "bin" and pairs.name == "agedb" and len(pairs) == 3
    assert pairs.images == tuple(images)
    assert pairs.first.tolist() == [0, 2, 4] and pairs.second.tolist() == [1, 3, 5]
    assert pairs.same.tolist() == [True, False, True] and pairs.files == []


@pytest.mark.parametrize(
    "content",
    [b"a,b,c\n", b"same\tx\ty\n", b"2,a.jpg,b.jpg\n", b"\x00\x01\xffGIF89a", b"{}"],
)
def test_load_pairs_refuses_unknown_content(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "x.csv").write_bytes(content)
    with pytest.raises(FormatError, match=r"expected an InsightFace verification \.bin") as err:
        load_pairs(tmp_path / "x.csv")
    assert "LFW's pairs.txt" in str(err.value) and "is_same,first,second" in str(err.value)


def test_load_pairs_refuses_empty_missing_and_malformed_lists(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("\n  \n")
    with pytest.raises(InputError, match="empty: it holds no pairs"):
        load_pairs(tmp_path / "empty.csv")
    (tmp_path / "zero.txt").write_text("10\t0\n")
    with pytest.raises(InputError, match="holds no pairs"):
        load_pairs(tmp_path / "zero.txt")
    with pytest.raises(InputError, match="no such file"):
        load_pairs(tmp_path / "absent.csv")
    (tmp_path / "bad.csv").write_text("1,a,b\n1,a\n")
    with pytest.raises(FormatError, match="line 2"):
        load_pairs(tmp_path / "bad.csv")
    (tmp_path / "latin.csv").write_bytes(b"1,a.jpg,b.jpg\n1,caf\xe9.jpg,b.jpg\n")
    with pytest.raises(FormatError, match="not UTF-8"):
        load_pairs(tmp_path / "latin.csv")


def test_load_pairs_on_a_converted_bin_folder_names_its_pair_list(tmp_path: Path) -> None:
    (tmp_path / "lfw").mkdir()
    (tmp_path / "lfw" / "_pairs.csv").write_text(CSV)
    with pytest.raises(InputError, match=r"is a directory.*lfw/_pairs\.csv"):
        load_pairs(tmp_path / "lfw")  # a conversion by an older fmlkit
    (tmp_path / "lfw.pairs.csv").write_text(CSV)
    with pytest.raises(InputError, match=r"is a directory.*lfw\.pairs\.csv"):
        load_pairs(tmp_path / "lfw")


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for name in ("Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg", "Bob/Bob_0002.jpg", "Bob/Bob_0003.png"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    (tmp_path / "secret.jpg").write_bytes(b"x")
    return root


def test_locate_files_refuses_every_name_leading_outside_the_root(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "Ann" / "link_out.jpg").symlink_to(tmp_path / "secret.jpg")
    (root / "Ann" / "link_in.jpg").symlink_to(root / "Ann" / "Ann_0001.jpg")
    (tmp_path / "pairs.csv").write_text(
        "1,../../etc/passwd,Ann/Ann_0001.jpg\n"
        f"0,{tmp_path / 'secret.jpg'},Ann/link_in.jpg\n"
        "1,Ann/link_out.jpg,Ann/../../secret.jpg\n"
        "0,Ann/Ann_0002.jpg,Cy/Cy_0001.jpg\n"
    )
    pairs = load_pairs(tmp_path / "pairs.csv")
    found = locate_files(pairs, root)
    assert sorted(found.outside) == sorted(
        ["../../etc/passwd", str(tmp_path / "secret.jpg"), "Ann/link_out.jpg",
         "Ann/../../secret.jpg"]
    )  # fmt: skip
    assert found.missing == ["Cy/Cy_0001.jpg"]
    assert found.paths["Ann/link_in.jpg"] == (root / "Ann" / "Ann_0001.jpg").resolve()
    problems = dict(found.problems(root))
    assert problems["../../etc/passwd"] == f"outside --root {root}"
    assert problems["Cy/Cy_0001.jpg"] == f"not found under {root}"
    first, second = pair_positions(pairs, {n: i for i, n in enumerate(found.paths)})
    assert (first < 0).tolist() == [True, True, True, False]
    assert (second < 0).tolist() == [False, False, True, True]


def test_locate_files_finds_lfw_names_with_another_extension(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (tmp_path / "pairs.txt").write_text("1\t1\nBob\t2\t3\nAnn\t1\tBob\t4\n")
    found = locate_files(load_pairs(tmp_path / "pairs.txt"), root)
    assert found.paths["Bob/Bob_0003.jpg"] == (root / "Bob" / "Bob_0003.png").resolve()
    assert found.missing == ["Bob/Bob_0004.jpg"] and found.outside == []
    (tmp_path / "pairs.csv").write_text("1,Bob/Bob_0002.jpg,Bob/Bob_0003.jpg\n")
    csv_found = locate_files(load_pairs(tmp_path / "pairs.csv"), root)
    assert csv_found.missing == ["Bob/Bob_0003.jpg"]  # CSV names are exact


def test_locate_files_needs_a_folder(tmp_path: Path) -> None:
    (tmp_path / "pairs.csv").write_text(CSV)
    with pytest.raises(InputError, match="not a directory"):
        locate_files(load_pairs(tmp_path / "pairs.csv"), tmp_path / "nowhere")
