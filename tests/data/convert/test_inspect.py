from __future__ import annotations

from pathlib import Path

import pytest

from fmlkit.data.convert.from_rec import rec_to_parquet
from fmlkit.data.convert.inspect import inspect_path
from fmlkit.data.formats.recordio import IRHeader, RecordWriter, pack
from fmlkit.errors import InputError
from tests.data.recs import flavour_a_rec


def _facts(report: object) -> dict[str, str]:
    return dict(report.facts)  # type: ignore[attr-defined]


def test_inspect_rec_and_its_parquet(tmp_path: Path) -> None:
    rec = flavour_a_rec(tmp_path, [0, 0, 0, 1, 2, 2])
    report = inspect_path(rec)
    facts = _facts(report)
    assert report.kind == "MXNet RecordIO" and facts["flavour"] == "A"
    assert facts["records"] == "10 (6 images)"
    assert facts["classes"] == "3 (3 with images)" and facts["label range"] == "0..2"
    assert facts["images per class"] == "min 1, median 2, max 3"
    assert facts["image sizes"] == "16x16 JPEG (6) in a sample of 6"
    assert report.warnings == ()
    rec_to_parquet(rec, tmp_path / "ds")
    parquet = _facts(inspect_path(tmp_path / "ds", sample=2))
    assert parquet["rows"] == "6" and parquet["classes"] == "3 (3 with images)"
    assert parquet["image sizes"] == "16x16 JPEG (2) in a sample of 2"


def test_inspect_rec_warns_about_identity_records(tmp_path: Path) -> None:
    rec = tmp_path / "t.rec"
    with RecordWriter(rec, tmp_path / "t.idx") as writer:
        writer.write(0, pack(IRHeader(2, (3.0, 4.0))))
        writer.write(1, pack(IRHeader(0, 0.0), b"\xff\xd8x"))
        writer.write(2, pack(IRHeader(0, 1.0), b"\xff\xd8y"))
        writer.write(3, pack(IRHeader(2, (1.0, 3.0))))  # one identity record for two classes
    report = inspect_path(rec)
    assert any("disagree" in w for w in report.warnings)
    assert any("1 identity records for 2 classes" in w for w in report.warnings)
    assert "undecodable (2)" in _facts(report)["image sizes"]


def test_inspect_dataset_info_counts_errors_and_folds(synth_scan: Path) -> None:
    report = inspect_path(synth_scan)
    facts = _facts(report)
    assert report.kind == "dataset_info" and facts["labels"] == "20"
    assert facts["rows"].endswith("without an error)")
    assert report.warnings and "rows with an error" in report.warnings[0]


def test_inspect_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        inspect_path(tmp_path / "none.rec")
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError, match=r"no _manifest\.parquet"):
        inspect_path(tmp_path / "folder")
    empty = tmp_path / "empty.rec"
    empty.write_bytes(b"")
    assert _facts(inspect_path(empty))["records"] == "0 (0 images)"
