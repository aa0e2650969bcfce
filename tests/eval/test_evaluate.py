"""`evaluate`: CSV, LFW and .bin lists; model mode (checkpoint, ONNX) equal to embeddings mode on
`embed`'s output; unusable images listed or skipped and counted; bad embeddings refused."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fmlkit.data.formats.insightface_bin import write_bin
from fmlkit.errors import FormatError, InputError, OptionError, SchemaError
from fmlkit.eval.evaluate import EvaluateOptions, evaluate
from fmlkit.eval.verification import score_pairs

CLASSES, PER_CLASS, FOLD_PAIRS = 4, 6, 2  # LFW layout: 10 folds of 2 matched + 2 mismatched
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
Row = tuple[bool, str, int, str, int]  # same, first label, number, second label, number


def file_name(label: str, number: int) -> str:
    return f"{label}/{label}_{number:04d}.jpg"


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The tiny models here gain nothing from intra-op threads, and on a shared 2-core machine
    two spinning threads made a forward pass 80 times slower; restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_faces(root: Path) -> Path:
    """4 identities × 6 noisy coloured 32×32 JPEGs in ``root`` named as LFW names them, and
    info.csv (noisy enough that a 3-step model's AUC and EER are not trivially perfect)."""
    rng = np.random.default_rng(0)
    rows = ["file_name,label"]
    for c in range(CLASSES):
        colour = np.array([(c * 70) % 256, (c * 130 + 40) % 256, (c * 200 + 90) % 256])
        (root / f"id{c}").mkdir(parents=True)
        for i in range(1, PER_CLASS + 1):
            pixels = np.clip(colour + rng.normal(0, 90, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / file_name(f"id{c}", i), quality=95)
            rows.append(f"{file_name(f'id{c}', i)},id{c}")
    (root / "info.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_faces(tmp_path_factory.mktemp("faces"))


@dataclass(frozen=True)
class Models:
    checkpoint: Path
    onnx: Path


def make_checkpoint(images: Path, out: Path) -> Path:
    """A 3-step mobilefacenet run on ``images``/info.csv (32 px, 16-d): its last.pt."""
    from fmlkit.train.config import load_config
    from fmlkit.train.loop import train

    overrides = [
        f"data.dataset_info={images / 'info.csv'}", f"data.root={images}", "data.image_size=32",
        "model.backbone=mobilefacenet", "model.embedding_size=16", "head.name=cosface",
        "train.batch_size=8", "train.max_steps=3", "train.num_workers=0", f"output_dir={out}",
    ]  # fmt: skip
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see one_torch_thread
    try:
        train(load_config(None, overrides))
    finally:
        torch.set_num_threads(threads)
    return out / "checkpoints" / "last.pt"


@pytest.fixture(scope="module")
def models(faces: Path, tmp_path_factory: pytest.TempPathFactory) -> Models:
    from fmlkit.train.export import export_onnx

    out = tmp_path_factory.mktemp("models")
    checkpoint = make_checkpoint(faces, out / "run")
    export_onnx(checkpoint, out / "model.onnx")
    return Models(checkpoint, out / "model.onnx")


def pair_rows(seed: int = 0) -> list[Row]:
    """40 pairs of the faces in LFW's layout (per fold, 2 matched then 2 mismatched); the
    first images run through all 24 faces, so every face is used."""
    rng = np.random.default_rng(seed)
    rows: list[Row] = []
    for k in range(20 * FOLD_PAIRS):
        same = k % (2 * FOLD_PAIRS) < FOLD_PAIRS
        c, i = divmod(k % (CLASSES * PER_CLASS), PER_CLASS)
        other = c if same else int(rng.choice([x for x in range(CLASSES) if x != c]))
        j = int(rng.choice([x for x in range(PER_CLASS) if x != i or not same]))
        rows.append((same, f"id{c}", i + 1, f"id{other}", j + 1))
    return rows


def write_csv(path: Path, rows: list[Row]) -> Path:
    lines = [f"{int(s)},{file_name(a, i)},{file_name(b, j)}" for s, a, i, b, j in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_lfw(path: Path, rows: list[Row]) -> Path:
    lines = [f"10\t{FOLD_PAIRS}"]
    lines += [f"{a}\t{i}\t{j}" if s else f"{a}\t{i}\t{b}\t{j}" for s, a, i, b, j in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_embeddings(
    path: Path, names: list[str], vectors: np.ndarray | list[Any], labels: list[str] | None
) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, Any] = {"file_name": names}
    if labels is not None:
        columns["label"] = labels
    columns["embedding"] = pa.array(
        [None if v is None else list(map(float, v)) for v in vectors], pa.list_(pa.float32())
    )
    pq.write_table(pa.table(columns), path)
    return path


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Embeddings (8-d, a centre per identity plus noise) of every face name, with labels."""
    out = tmp_path_factory.mktemp("synthetic")
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(CLASSES, 8))
    names, labels, vectors = [], [], []
    for c in range(CLASSES):
        for i in range(1, PER_CLASS + 1):
            names.append(file_name(f"id{c}", i))
            labels.append(f"id{c}")
            vectors.append(centres[c] + rng.normal(0, 0.9, 8))
    return write_embeddings(out / "emb.parquet", names, np.array(vectors), labels)


@pytest.fixture
def quick_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip rendering the PNGs (a second each on a loaded CI core); tests that check the
    plots do not use this."""
    import fmlkit.eval.report

    monkeypatch.setattr(fmlkit.eval.report, "png_bytes", lambda fig: PNG_MAGIC)


def read_metrics(out: Path) -> dict[str, Any]:
    return json.loads((out / "metrics.json").read_text())


def assert_close(got: Mapping[str, Any], expected: Mapping[str, Any], tol: float) -> None:
    assert set(got) == set(expected)
    for key, value in expected.items():
        if isinstance(value, Mapping):
            assert_close(got[key], value, tol)
        else:
            assert got[key] == pytest.approx(value, abs=tol), key


def test_csv_and_lfw_lists_of_the_same_pairs_give_identical_numbers(
    synthetic: Path, tmp_path: Path
) -> None:
    rows = pair_rows()
    lists = [write_csv(tmp_path / "as_csv.csv", rows), write_lfw(tmp_path / "as_lfw.txt", rows)]
    report = evaluate(tmp_path / "out", pairs=lists, embeddings=synthetic)
    metrics = read_metrics(tmp_path / "out")
    assert list(metrics) == ["as_csv", "as_lfw"] and report.metrics == metrics
    assert metrics["as_csv"] == metrics["as_lfw"] and metrics["as_csv"]["pairs"] == 40
    import pyarrow.parquet as pq

    table = pq.read_table(synthetic).to_pydict()
    vectors = dict(zip(table["file_name"], np.array(table["embedding"]), strict=True))
    first = np.array([vectors[file_name(a, i)] for _, a, i, _, _ in rows])
    second = np.array([vectors[file_name(b, j)] for _, _, _, b, j in rows])
    expected = score_pairs(first, second, np.array([r[0] for r in rows])).result
    keys = [(s, *sorted([file_name(a, i), file_name(b, j)])) for s, a, i, b, j in rows]
    repeated = sum(key in keys[:n] for n, key in enumerate(keys))  # drawn at random: recorded
    assert metrics["as_csv"].pop("repeated_pairs", 0) == repeated
    assert metrics["as_csv"] == json.loads(json.dumps(expected))
    assert 0.6 < metrics["as_csv"]["accuracy"] <= 1
    for name in ("roc.png", "scores.png"):
        assert (tmp_path / "out" / name).read_bytes().startswith(PNG_MAGIC)
    assert "as_lfw" in (tmp_path / "out" / "metrics.md").read_text()
    assert "as_csv" in report.summary() and "as_lfw" in report.summary()


def test_model_mode_equals_embeddings_mode_on_embeds_output(
    faces: Path, models: Models, tmp_path: Path, quick_plots: None
) -> None:
    """The pairs name every face, so both ways embed one identical batch: the same numbers to
    the last digit (this 3-step model's embeddings lie close together, so even float noise
    between batch sizes could reorder them; `Embedder.embed_images` batching is tested apart)."""
    from fmlkit.eval.embed import embed

    pairs = [write_csv(tmp_path / "faces.csv", pair_rows())]
    stored = {}
    for kind, flip_sum in [("checkpoint", True), ("checkpoint", False), ("onnx", True)]:
        model = {kind: getattr(models, kind)}
        emb = tmp_path / f"{kind}_{flip_sum}.parquet"
        embed(faces / "info.csv", emb, root=faces, flip_sum=flip_sum, **model)
        stored[kind, flip_sum] = evaluate(tmp_path / "e", pairs=pairs, embeddings=emb).metrics
        direct = evaluate(tmp_path / "m", pairs=pairs, root=faces, flip_sum=flip_sum, **model)
        assert direct.metrics == stored[kind, flip_sum]
    assert 0.7 < stored["checkpoint", True]["faces"]["auc"] < 1  # not a trivial model
    assert stored["checkpoint", True] != stored["checkpoint", False]


def test_embed_images_is_the_same_in_any_batch_size_and_names_failures(
    faces: Path, models: Models
) -> None:
    from fmlkit.eval.embed import load_embedder

    embedder = load_embedder(checkpoint=models.checkpoint)
    sources: list[bytes | Path] = [faces / file_name("id0", i) for i in range(1, 7)]
    sources[2] = b"not an image"
    sources[4] = faces / "absent.jpg"
    whole, failed = embedder.embed_images(sources, batch_size=64)
    assert sorted(failed) == [2, 4] and "FileNotFoundError" in failed[4]
    assert not whole[[2, 4]].any() and whole[[0, 1, 3, 5]].all()
    for batch_size in (1, 2, 5):
        vectors, again = embedder.embed_images(sources, batch_size=batch_size)
        assert again.keys() == failed.keys()
        np.testing.assert_allclose(vectors, whole, rtol=1e-4, atol=1e-5)
    plain, _ = embedder.embed_images(sources[:1], flip_sum=False)
    assert not np.allclose(plain[0], whole[0])


def test_a_bin_evaluates_in_model_mode_from_its_own_images(
    faces: Path, models: Models, tmp_path: Path, quick_plots: None
) -> None:
    rows = pair_rows(2)
    images = []
    for _, a, i, b, j in rows:
        images += [(faces / file_name(a, i)).read_bytes(), (faces / file_name(b, j)).read_bytes()]
    write_bin(tmp_path / "faces.bin", images, [r[0] for r in rows])
    # one image per forward pass: each image's embedding is the same bits either way
    bin_list = [tmp_path / "faces.bin"]
    from_bin = evaluate(tmp_path / "b", pairs=bin_list, onnx=models.onnx, batch_size=1)
    listed = [write_csv(tmp_path / "faces.csv", rows)]
    from_files = evaluate(tmp_path / "f", pairs=listed, onnx=models.onnx, root=faces, batch_size=1)
    assert from_bin.metrics == from_files.metrics
    with pytest.raises(InputError, match=r"InsightFace \.bin: its images are inside it"):
        evaluate(tmp_path / "x", pairs=[tmp_path / "faces.bin"], embeddings=tmp_path / "e.pq")


def test_pairs_absent_from_the_embeddings_are_listed_or_skipped_and_counted(
    synthetic: Path, tmp_path: Path, quick_plots: None
) -> None:
    rows = pair_rows()
    rows[3] = (False, "id0", 1, "ghost", 1)
    rows[7] = (True, "ghost", 2, "ghost", 3)
    rows[8] = (True, "id1", 1, "id1", 99)
    rows[9] = (False, "nobody", 1, "id1", 99)
    pairs = write_csv(tmp_path / "holes.csv", rows)
    with pytest.raises(InputError) as err:
        evaluate(tmp_path / "out", pairs=[pairs], embeddings=synthetic)
    message = str(err.value)
    assert "names 5 image(s) that cannot be used" in message
    assert f"ghost/ghost_0001.jpg (not in {synthetic})" in message and "and 2 more" in message
    assert "--skip-missing to drop the 4 of 40 pairs" in message
    assert not (tmp_path / "out").exists()
    report = evaluate(tmp_path / "out", pairs=[pairs], embeddings=synthetic, skip_missing=True)
    assert report.skipped == {"holes": 4} and "4 pairs naming unusable images" in report.summary()
    metrics = read_metrics(tmp_path / "out")["holes"]
    assert metrics["skipped_missing"] == 4 and metrics["pairs"] == 36
    assert "skipped_missing" in (tmp_path / "out" / "metrics.md").read_text()


def test_names_outside_the_root_are_refused_before_the_model_loads(
    faces: Path, models: Models, tmp_path: Path, quick_plots: None
) -> None:
    import shutil

    root = tmp_path / "root"
    shutil.copytree(faces, root)
    (tmp_path / "outside.jpg").write_bytes((faces / file_name("id0", 2)).read_bytes())
    (root / "sneaky.jpg").symlink_to(tmp_path / "outside.jpg")
    rows = [f"{int(s)},{file_name(a, i)},{file_name(b, j)}" for s, a, i, b, j in pair_rows()]
    rows[0] = "1,../../etc/passwd,id0/id0_0001.jpg"
    rows[5] = "0,sneaky.jpg,id1/id1_0001.jpg"
    rows[6] = f"0,{root / 'id1' / 'id1_0001.jpg'},id2/id2_0001.jpg"
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("\n".join(rows) + "\n")
    not_a_model = tmp_path / "bogus.pt"
    not_a_model.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError) as err:  # the pairs are checked first: the model is not read
        evaluate(tmp_path / "out", pairs=[pairs], checkpoint=not_a_model, root=root)
    message = str(err.value)
    assert f"../../etc/passwd (outside --root {root})" in message
    assert f"sneaky.jpg (outside --root {root})" in message and "names 3 image(s)" in message
    report = evaluate(
        tmp_path / "out", pairs=[pairs], onnx=models.onnx, root=root, skip_missing=True
    )
    assert report.metrics["pairs"]["skipped_missing"] == 3
    assert report.metrics["pairs"]["pairs"] == 37


def test_undecodable_images_are_an_error_or_skipped(
    faces: Path, models: Models, tmp_path: Path, quick_plots: None
) -> None:
    import shutil

    root = tmp_path / "root"
    shutil.copytree(faces, root)
    (root / file_name("id2", 3)).write_bytes(b"not a jpeg")
    rows = pair_rows()
    dropped = sum(file_name("id2", 3) in (file_name(a, i), file_name(b, j))
                  for _, a, i, b, j in rows)  # fmt: skip
    assert dropped > 0
    pairs = write_csv(tmp_path / "pairs.csv", rows)
    with pytest.raises(InputError, match=r"id2/id2_0003\.jpg \(cannot be decoded: "):
        evaluate(tmp_path / "out", pairs=[pairs], onnx=models.onnx, root=root)
    report = evaluate(tmp_path / "out", pairs=[pairs], onnx=models.onnx, root=root,
                      skip_missing=True)  # fmt: skip
    assert report.skipped == {"pairs": dropped}
    images = [(faces / file_name("id0", 1 + k % 6)).read_bytes() for k in range(24)]
    images[3] = b"not an image either"
    write_bin(tmp_path / "broken.bin", images, [True, False] * 6)
    with pytest.raises(InputError, match=r"image 3 \(pair 1\) \(cannot be decoded: "):
        evaluate(tmp_path / "out", pairs=[tmp_path / "broken.bin"], onnx=models.onnx)
    report = evaluate(tmp_path / "out", pairs=[tmp_path / "broken.bin"], onnx=models.onnx,
                      skip_missing=True)  # fmt: skip
    assert report.skipped == {"broken": 1} and report.metrics["broken"]["pairs"] == 11


@pytest.mark.parametrize(
    ("vectors", "names", "message"),
    [
        ([[1, 2], [1, 2, 3], [1, 0]], ["a", "b", "c"], "mixed dimension: 2 (e.g. a), 3 (e.g. b)"),
        ([[1, 2], [np.nan, 1], [1, np.inf]], list("abc"), "2 embeddings have NaN or infinite"),
        ([[1, 2], [1, 2], [1, 0]], ["a", "b", "a"], "1 file names appear more than once (a)"),
        ([[1, 2], None, [1, 0]], ["a", "b", "c"], "1 embeddings have no embedding (b)"),
        ([[], [], []], ["a", "b", "c"], "the embeddings are empty lists"),
        ([], [], "holds no embeddings"),
    ],
)  # fmt: skip
def test_bad_embeddings_are_refused_with_the_rows_named(
    tmp_path: Path, vectors: list[Any], names: list[str], message: str
) -> None:
    emb = write_embeddings(tmp_path / "emb.parquet", names, vectors, None)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("1,a,b\n" * 10)
    with pytest.raises(InputError, match=re.escape(message)):
        evaluate(tmp_path / "out", pairs=[pairs], embeddings=emb)


def test_embeddings_are_read_in_batches_of_any_list_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    import fmlkit.data.formats.embeddings
    from fmlkit.data.formats.embeddings import read_embeddings

    monkeypatch.setattr(fmlkit.data.formats.embeddings, "READ_ROWS", 2)
    vectors = np.arange(15, dtype=np.float64).reshape(5, 3)
    names = list("abcde")
    for kind in (pa.list_(pa.float64()), pa.large_list(pa.float16()), pa.list_(pa.float32(), 3)):
        column = pa.array(vectors.tolist(), kind)
        pq.write_table(pa.table({"file_name": names, "embedding": column}), tmp_path / "e.pq")
        table = read_embeddings(tmp_path / "e.pq")
        np.testing.assert_array_equal(table.vectors, vectors)
        assert table.index == {n: i for i, n in enumerate(names)} and table.labels is None
    ragged = [[1.0, 2.0]] * 3 + [[1.0, 2.0, 3.0], [1.0, 2.0]]  # the odd one in the 2nd batch
    write_embeddings(tmp_path / "r.pq", names, ragged, None)
    with pytest.raises(InputError, match=re.escape("2 (e.g. a), 3 (e.g. d)")):
        read_embeddings(tmp_path / "r.pq")


def test_embeddings_that_are_not_fmlkits_are_refused(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pairs = tmp_path / "pairs.csv"
    pairs.write_text("1,a,b\n" * 10)
    pq.write_table(pa.table({"file_name": ["a"], "vector": [[1.0]]}), tmp_path / "x.parquet")
    with pytest.raises(SchemaError, match="missing column"):
        evaluate(tmp_path / "out", pairs=[pairs], embeddings=tmp_path / "x.parquet")
    pq.write_table(pa.table({"file_name": ["a"], "embedding": ["1,2"]}), tmp_path / "s.parquet")
    with pytest.raises(SchemaError, match="expected a list of floats"):
        evaluate(tmp_path / "out", pairs=[pairs], embeddings=tmp_path / "s.parquet")
    (tmp_path / "t.parquet").write_text("file_name,embedding\n")
    with pytest.raises(FormatError, match="not a readable Parquet file"):
        evaluate(tmp_path / "out", pairs=[pairs], embeddings=tmp_path / "t.parquet")


def test_empty_lists_are_refused(synthetic: Path, tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="empty: it holds no pairs"):
        evaluate(tmp_path / "out", pairs=[tmp_path / "empty.csv"], embeddings=synthetic)
    (tmp_path / "ghosts.csv").write_text("1,ghost/a.jpg,ghost/b.jpg\n" * 12)
    with pytest.raises(InputError, match=r"no pair of .* is left once"):
        evaluate(tmp_path / "out", pairs=[tmp_path / "ghosts.csv"], embeddings=synthetic,
                 skip_missing=True)  # fmt: skip


def test_retrieval_over_stored_labels_and_over_a_dataset(
    faces: Path, models: Models, synthetic: Path, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    from fmlkit.eval.embed import embed
    from fmlkit.eval.retrieval import retrieval_metrics

    report = evaluate(tmp_path / "r", embeddings=synthetic, retrieval=True)
    table = pq.read_table(synthetic).to_pydict()
    expected = retrieval_metrics(np.array(table["embedding"], np.float32), table["label"])
    assert report.metrics == {"retrieval": json.loads(json.dumps(expected))}
    assert not (tmp_path / "r" / "roc.png").exists() and "P@1" in report.summary()
    emb = embed(faces / "info.csv", tmp_path / "e.parquet", onnx=models.onnx, root=faces).output
    stored = evaluate(tmp_path / "s", embeddings=emb, retrieval=True).metrics
    direct = evaluate(tmp_path / "d", onnx=models.onnx, retrieval=True,
                      retrieval_input=faces / "info.csv", root=faces).metrics  # fmt: skip
    assert direct["retrieval"].pop("skipped_undecodable") == 0
    assert_close(direct, stored, 1e-6)
    write_embeddings(tmp_path / "nolabel.parquet", ["a", "b"], [[1.0], [2.0]], None)
    with pytest.raises(InputError, match="has no label column"):
        evaluate(tmp_path / "n", embeddings=tmp_path / "nolabel.parquet", retrieval=True)


def test_benchmark_names_are_stems_prefixed_by_their_folder_when_they_clash(
    synthetic: Path, tmp_path: Path, quick_plots: None
) -> None:
    rows = pair_rows()
    for folder in ("lfw", "calfw", "x"):
        (tmp_path / folder).mkdir()
    lists = [write_lfw(tmp_path / "lfw" / "pairs.txt", rows),
             write_csv(tmp_path / "calfw" / "pairs.csv", rows),
             write_csv(tmp_path / "x" / "retrieval.csv", rows)]  # fmt: skip
    report = evaluate(tmp_path / "out", pairs=lists, embeddings=synthetic, retrieval=True)
    assert list(report.metrics) == ["lfw/pairs", "calfw/pairs", "x/retrieval", "retrieval"]
    with pytest.raises(InputError, match="is given twice"):
        evaluate(tmp_path / "o", pairs=[lists[0], lists[0]], embeddings=synthetic)
    (tmp_path / "y" / "lfw").mkdir(parents=True)
    again = write_csv(tmp_path / "y" / "lfw" / "pairs.csv", rows)
    with pytest.raises(InputError, match="'lfw/pairs' clash even with their folder"):
        evaluate(tmp_path / "o", pairs=[lists[0], again], embeddings=synthetic)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give exactly one of checkpoint, onnx, weights and embeddings"),
        ({"checkpoint": "c.pt", "onnx": "m.onnx"}, "found checkpoint, onnx"),
        ({"onnx": "m.onnx", "pairs": ()}, "nothing to evaluate"),
        ({"onnx": "m.onnx", "retrieval": True}, "pass retrieval_input"),
        ({"onnx": "m.onnx", "retrieval_input": "info.csv", "pairs": ("p",)}, "add retrieval=True"),
        ({"embeddings": "e.parquet", "root": "."}, "root is for model mode"),
        ({"onnx": "m.onnx", "batch_size": 0}, "expected ≥ 1"),
        ({"embeddings": "e.parquet", "flip_sum": False}, "flip_sum=False has no effect with"),
    ],
)
def test_impossible_option_combinations_are_refused(
    kwargs: dict[str, Any], message: str, tmp_path: Path
) -> None:
    options = {"pairs": ("p.csv",), **kwargs}
    with pytest.raises(InputError, match=re.escape(message)):
        evaluate(tmp_path / "out", **options)


@pytest.mark.parametrize(
    ("kwargs", "names", "message"),
    [
        (
            {"onnx": "m.onnx", "embeddings": "e.parquet"},
            ("checkpoint", "onnx", "weights", "embeddings"),
            "give exactly one of checkpoint, onnx, weights and embeddings (the source of the "
            "embeddings); found onnx, embeddings",
        ),
        (
            {"onnx": "m.onnx", "pairs": ()},
            ("pairs", "retrieval", "ijb", "gallery", "probes"),
            "nothing to evaluate: give pairs, retrieval=True, ijb or gallery with probes",
        ),
        ({"onnx": "m.onnx", "batch_size": 0}, ("batch_size",), "batch_size: expected ≥ 1, found 0"),
        (
            {"onnx": "m.onnx", "retrieval_input": "info.csv"},
            ("retrieval_input", "retrieval"),
            "retrieval_input is the retrieval dataset: add retrieval=True",
        ),
        (
            {"onnx": "m.onnx", "pairs": (), "retrieval": True},
            ("retrieval_input", "root"),
            "retrieval with a model embeds a dataset: pass retrieval_input (a dataset_info table "
            "with root, or a Parquet dataset folder)",
        ),
        (
            {"embeddings": "e.parquet", "flip_sum": False},
            ("flip_sum", "embeddings"),
            "flip_sum=False has no effect with embeddings: flip-sum is chosen at `fmlkit embed`",
        ),
        (
            {"embeddings": "e.parquet", "root": ".", "retrieval": True, "retrieval_input": "d"},
            ("root", "retrieval_input", "embeddings"),
            "root and retrieval_input are for model mode; with embeddings, pairs are looked up by "
            "file name and retrieval uses the table's labels: drop them",
        ),
    ],
)
def test_evaluate_options_refuse_each_bad_combination_naming_the_options(
    kwargs: dict[str, Any], names: tuple[str, ...], message: str
) -> None:
    with pytest.raises(OptionError) as err:
        EvaluateOptions(**{"pairs": ("p.csv",), **kwargs})
    assert str(err.value) == message
    assert err.value.options == names


@pytest.mark.parametrize(
    "kwargs",
    [
        {"embeddings": "e.parquet", "retrieval": True},
        {"checkpoint": "c.pt", "root": "faces", "flip_sum": False, "skip_missing": True},
        {"onnx": "m.onnx", "pairs": (), "retrieval": True, "retrieval_input": "p/"},
    ],
)
def test_evaluate_options_accept_each_good_combination(kwargs: dict[str, Any]) -> None:
    options = EvaluateOptions(**{"pairs": ("p.csv",), **kwargs})
    assert options == EvaluateOptions(**{"pairs": ("p.csv",), **kwargs})


def test_text_lists_in_model_mode_need_a_root(models: Models, tmp_path: Path) -> None:
    pairs = write_csv(tmp_path / "p.csv", pair_rows())
    with pytest.raises(InputError, match="pass --root"):
        evaluate(tmp_path / "out", pairs=[pairs], onnx=models.onnx)
