"""Self-describing ONNX: `export_onnx`'s ``fmlkit.*`` metadata read back by the real onnx and
onnxruntime, the model card beside it; `embed --onnx --preprocess insightface` on a model that
expects BGR (x − 127.5)/127.5 embeds as torch does; bad inputs and misplaced options refused."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fmlkit.train.onnx_meta import PREFIX, config_sha256, write_metadata
from tests.eval.test_evaluate import make_checkpoint, write_faces
from tests.hostile.check import fmlkit, nothing_complete, refused, succeeded


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models; see tests/eval/test_evaluate.py
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The faces folder, a 3-step checkpoint on them, and its `export_onnx` export."""
    from fmlkit.train.export import export_onnx

    faces = write_faces(tmp_path_factory.mktemp("faces"))
    out = tmp_path_factory.mktemp("models")
    checkpoint = make_checkpoint(faces, out / "run")
    export_onnx(checkpoint, out / "export" / "model.onnx")
    return faces, checkpoint, out / "export" / "model.onnx"


def _embed(faces: Path, out: Path, *model: str | Path) -> np.ndarray:
    import pyarrow.parquet as pq

    result = fmlkit("embed", *model, "--input", faces / "info.csv", "--root", faces, "-o", out)
    succeeded(result)
    return np.array(pq.read_table(out).column("embedding").to_pylist())


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def test_export_metadata_reads_back_with_onnx_and_onnxruntime(
    run: tuple[Path, Path, Path],
) -> None:
    import onnx
    import onnxruntime

    from fmlkit import __version__
    from fmlkit.train.checkpoint import load_checkpoint

    _, checkpoint, path = run
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    expected = {
        "input_size": "32", "channel_order": "RGB", "mean": "[0.5, 0.5, 0.5]",
        "std": "[0.5, 0.5, 0.5]", "layout": "NCHW", "embedding_size": "16",
        "normalized": "false", "version": __version__,
        "config_sha256": config_sha256(load_checkpoint(checkpoint)["config"]),
    }  # fmt: skip
    assert props == {PREFIX + k: v for k, v in expected.items()}
    assert "mobilefacenet" in model.doc_string and "RGB" in model.doc_string
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map == props
    card = (path.parent / "MODEL_CARD.md").read_text(encoding="utf-8")
    for words in ("Backbone: mobilefacenet", "Embedding size: 16", "32×32 px, RGB",
                  "Training steps: 3", "Intended use", "without an evaluation"):  # fmt: skip
        assert words in card, card
    assert json.loads(props[PREFIX + "mean"]) == [0.5, 0.5, 0.5]


class _BGRInput(nn.Module):
    """The backbone behind an input in BGR order: (x − 127.5)/127.5 is (x/255 − 0.5)/0.5, so
    only the channel order changes."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images.flip(1))


def test_an_insightface_style_onnx_embeds_as_torch(
    run: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    import warnings

    from fmlkit.eval.embed import embed_dataset, load_embedder
    from fmlkit.eval.embedder import Embedder
    from fmlkit.train.build import create_model
    from fmlkit.train.checkpoint import load_checkpoint
    from fmlkit.train.config import config_from_dict

    faces, checkpoint, _ = run
    # a freshly initialised net of the run's config: the 3-step net's embeddings hardly
    # depend on the image (all cosines > 0.9999), so they could not tell the orders apart
    torch.manual_seed(0)
    backbone = create_model(config_from_dict(load_checkpoint(checkpoint)["config"])).eval()

    def run_torch(images: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return backbone(images).numpy()

    transform = load_embedder(checkpoint=checkpoint).transform  # RGB, (x/255 − 0.5)/0.5, 32 px
    reference = embed_dataset(
        Embedder(run_torch, transform), faces / "info.csv", root=faces
    ).embeddings
    bgr = tmp_path / "bgr.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_BGRInput(backbone), (torch.randn(2, 3, 32, 32),), str(bgr),
                          input_names=["data"], output_names=["fc1"], dynamo=False,
                          dynamic_axes={"data": {0: "n"}, "fc1": {0: "n"}})  # fmt: skip
    insightface = _embed(faces, tmp_path / "if.parquet", "--onnx", bgr, "--preprocess",
                         "insightface")  # fmt: skip
    assert _min_cosine(reference, insightface) > 0.9999
    # the case can fail: read as RGB, the same file embeds differently
    as_rgb = _embed(faces, tmp_path / "rgb.parquet", "--onnx", bgr, "--preprocess", "fmlkit")
    assert _min_cosine(reference, as_rgb) < 0.9999
    # with metadata saying BGR, the default (auto) reads it
    write_metadata(bgr, {PREFIX + "channel_order": "BGR", PREFIX + "input_size": "32"}, "")
    auto = _embed(faces, tmp_path / "auto.parquet", "--onnx", bgr)
    assert _min_cosine(reference, auto) > 0.9999


def test_an_onnx_without_a_3_channel_image_input_is_refused(
    run: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    import onnx
    from onnx import TensorProto, helper

    faces = run[0]
    for name, shape in (("rank3.onnx", [1, 3, 32]), ("gray.onnx", [1, 1, 32, 32])):
        graph = helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])], "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        )  # fmt: skip
        path = tmp_path / name
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
        out = tmp_path / f"{name}.parquet"
        result = fmlkit("embed", "--onnx", path, "--input", faces / "info.csv", "--root", faces,
                        "-o", out)  # fmt: skip
        found = "×".join(map(str, shape))
        refused(result, says=[str(path), f"shape {found}", "N×3×H×W"])
        nothing_complete(out)


def test_preprocess_without_onnx_is_a_usage_error(
    run: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    faces, checkpoint, _ = run
    out = tmp_path / "e.parquet"
    result = fmlkit("embed", "--checkpoint", checkpoint, "--preprocess", "insightface",
                    "--input", faces / "info.csv", "--root", faces, "-o", out)  # fmt: skip
    refused(result, says=["--preprocess", "--onnx"], code=2)
    nothing_complete(out)
    result = fmlkit("evaluate", "--checkpoint", checkpoint, "--preprocess", "fmlkit",
                    "--retrieval", "--input", faces, "-o", tmp_path / "ev")  # fmt: skip
    refused(result, says=["--preprocess", "--onnx"], code=2)
    nothing_complete(tmp_path / "ev")


def test_unreadable_fmlkit_metadata_is_refused_naming_the_file(
    run: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    import shutil

    faces, _, exported = run
    path = tmp_path / "odd.onnx"
    shutil.copy(exported, path)
    write_metadata(path, {PREFIX + "mean": "half"}, "")
    out = tmp_path / "odd.parquet"
    result = fmlkit("embed", "--onnx", path, "--input", faces / "info.csv", "--root", faces,
                    "-o", out)  # fmt: skip
    refused(result, says=[str(path), "fmlkit metadata cannot be read", "--preprocess"])
    nothing_complete(out)
    succeeded(fmlkit("embed", "--onnx", path, "--preprocess", "fmlkit", "--input",
                     faces / "info.csv", "--root", faces, "-o", out))  # fmt: skip


def test_export_records_the_runs_validation_at_the_checkpoints_step(
    run: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """The validation of the run's metrics.csv at the checkpoint's step (not a later one)
    reaches the metadata and the model card."""
    import onnx

    from fmlkit.train.export import export_onnx

    _, checkpoint, _ = run
    copy = tmp_path / "run"
    shutil.copytree(checkpoint.parent.parent, copy)
    header = "step,epoch,loss,lr,img_per_s,val_lfw_accuracy,val_lfw_accuracy_std,val_lfw_threshold"
    rows = ["1,0,9.5,0.1,10,,,", "3,0,9.1,0.1,10,0.875,0.02,1.25", "5,0,8.9,0.1,10,0.99,0.01,1.1"]
    (copy / "metrics.csv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    out = tmp_path / "export" / "model.onnx"
    export_onnx(copy / "checkpoints" / checkpoint.name, out)
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props[PREFIX + "val.step"] == "3"
    assert props[PREFIX + "val.lfw.accuracy"] == "0.875"
    assert props[PREFIX + "val.lfw.threshold"] == "1.25"
    card = (out.parent / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "Validation at step 3 (metrics.csv): lfw accuracy 0.875 (threshold 1.25)" in card
