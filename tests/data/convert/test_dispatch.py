"""`convert` never writes its output over what it reads: the source, a folder holding it, a
folder inside it, the .rec's index or a table's image folder, symlinks followed, with
--overwrite or not."""

from __future__ import annotations

from pathlib import Path

import pytest

from fmlkit.data.convert.dispatch import convert
from fmlkit.data.convert.from_rec import rec_to_parquet
from fmlkit.data.formats.parquet import MANIFEST
from fmlkit.errors import InputError
from tests.data.recs import flavour_a_rec, jpeg
from tests.processes import run_fmlkit


def _folder(root: Path) -> dict[Path, bytes]:
    """An image folder of 2 classes × 2 JPEGs and one undecodable file; every file's bytes."""
    files = {root / f"id{c}" / f"{i}.jpg": jpeg(c * 2 + i) for c in range(2) for i in range(2)}
    files[root / "id0" / "broken.jpg"] = b"not a jpeg"
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def _intact(files: dict[Path, bytes]) -> bool:
    return all(p.is_file() and p.read_bytes() == data for p, data in files.items())


def test_an_image_folder_is_not_replaced_by_its_own_conversion(tmp_path: Path) -> None:
    files = _folder(tmp_path / "d")
    with pytest.raises(InputError, match=r"the output .*d is the input .*d; write the output"):
        convert(tmp_path / "d", tmp_path / "d", overwrite=True, skip_bad=True)
    with pytest.raises(InputError, match="lies inside the input folder"):
        convert(tmp_path / "d", tmp_path / "d" / "pq", overwrite=True, skip_bad=True)
    with pytest.raises(InputError, match="holds the input"):
        convert(tmp_path / "d" / "id0", tmp_path / "d", overwrite=True, skip_bad=True)
    (tmp_path / "link").symlink_to(tmp_path / "d")
    with pytest.raises(InputError, match="is the input"):
        convert(tmp_path / "d", tmp_path / "link", overwrite=True, skip_bad=True)
    assert _intact(files) and not (tmp_path / "d" / MANIFEST).exists()
    report = convert(tmp_path / "d", tmp_path / "pq", skip_bad=True, workers=1)  # elsewhere
    assert report.rows == 4 and _intact(files)


def test_a_parquet_dataset_or_a_rec_is_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    rec = flavour_a_rec(tmp_path / "r", [0, 0, 1])
    rec_to_parquet(rec, tmp_path / "ds")
    shards = sorted(p.name for p in (tmp_path / "ds").iterdir())
    with pytest.raises(InputError, match="is the input"):
        convert(tmp_path / "ds", tmp_path / "ds", to="folder", overwrite=True)
    with pytest.raises(InputError, match="lies inside the input folder"):
        convert(tmp_path / "ds", tmp_path / "ds" / "train.rec", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == shards
    with pytest.raises(InputError, match="holds the input"):
        convert(rec, tmp_path / "r", overwrite=True)
    with pytest.raises(InputError, match="is the index"):
        convert(rec, rec.with_suffix(".idx"), overwrite=True)
    assert rec.is_file() and rec.with_suffix(".idx").is_file()


def test_a_table_source_keeps_its_image_folder(tmp_path: Path) -> None:
    images = tmp_path / "data" / "images"
    files = _folder(images)
    info = tmp_path / "info.csv"
    info.write_text("file_name,label\nid0/0.jpg,id0\nid1/0.jpg,id1\n")
    with pytest.raises(InputError, match=r"is the image folder \(--root\)"):
        convert(info, images, root=images, overwrite=True)
    with pytest.raises(InputError, match=r"holds the image folder \(--root\)"):
        convert(info, tmp_path / "data", root=images, overwrite=True)
    assert _intact(files) and info.is_file()
    report = convert(info, images / "pq", root=images)  # inside the image folder: fine
    assert report.rows == 2 and _intact(files)


def test_the_command_refuses_to_convert_a_folder_onto_itself(tmp_path: Path) -> None:
    files = _folder(tmp_path / "d")
    done = run_fmlkit("convert", str(tmp_path / "d"), str(tmp_path / "d"), "--overwrite",
                      "--skip-bad")  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "is the input" in errors[0], done.stderr
    assert _intact(files)
