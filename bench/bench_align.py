"""Benchmark `fmlkit align` against a straightforward detect-and-warp loop (issue #23).

Run: `make bench` or `.venv/bin/python bench/bench_align.py [--photos 120] [--repeats 3]`.
Prints a Markdown table (medians) and writes bench/out/align.json.

On the same photos (250×250 and 640×480 JPEGs, one real face each: scikit-image's LFW faces,
upscaled to 70–130 px, pasted on a random gradient), one run times, each as a fresh command
(interpreter start and imports included, as a user runs them), alternating after one untimed
warm-up of each:

- the baseline, the way insightface's examples align: one process, one image at a time: open
  with Pillow, the detector's own per-image call (the bundled RetinaFace, onnxruntime's default
  threads), the largest face, scikit-image's ``SimilarityTransform`` onto the ArcFace template,
  an OpenCV-style affine warp (Pillow's, pixel centres at integers), a PNG written;
- ``fmlkit align --detector retinaface --workers 2``.

Aligned faces per second is the crops a command wrote over its seconds (median); the ratio
is baseline seconds / fmlkit seconds, with a goal of 1.5. Both find the same faces: their crops
differ by about one grey level (median mean absolute difference, 640×480).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = 1.5
SIZES = {"250×250": (250, 250), "640×480": (640, 480)}

BASELINE = r"""
import sys
from pathlib import Path
import numpy as np
from PIL import Image
from skimage.transform import SimilarityTransform
from fmlkit.data.align.detect import create_detector
from fmlkit.data.align.types import ARCFACE_112

root, out = Path(sys.argv[1]), Path(sys.argv[2])
detector = create_detector("retinaface")  # threads: every usable CPU, like onnxruntime's default
for path in sorted(root.rglob("*.jpg")):
    image = np.asarray(Image.open(path).convert("RGB"))
    faces = [f for f in detector.detect([image])[0] if f.score >= 0.5]
    if not faces:
        continue
    face = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
    tform = SimilarityTransform.from_estimate(face.landmarks, ARCFACE_112)
    inverse = np.linalg.inv(tform.params)
    # Pillow samples at pixel corners: shift by half a pixel either side, like cv2.warpAffine
    shift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    unshift = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    m = (unshift @ inverse @ shift)[:2].ravel()
    crop = Image.fromarray(image).transform((112, 112), Image.Transform.AFFINE, tuple(m),
                                            Image.Resampling.BILINEAR)
    target = out / path.relative_to(root).with_suffix(".png")
    target.parent.mkdir(parents=True, exist_ok=True)
    crop.save(target)
"""


def _photos(root: Path, count: int, size: tuple[int, int]) -> None:
    """``count`` JPEG photos of ``size`` (width, height), one LFW face each, 20 a folder."""
    import numpy as np
    from PIL import Image
    from skimage import data

    faces = data.lfw_subset()[:100]
    rng = np.random.default_rng(23)
    width, height = size
    for i in range(count):
        a, b = rng.integers(0, 256, size=(2, 3))
        t = np.linspace(0, 1, width)[None, :, None] * np.linspace(0.5, 1, height)[:, None, None]
        canvas = (a + (b - a) * t).astype(np.uint8)
        side = int(rng.integers(70, 131))
        grey = Image.fromarray((faces[i % 100] * 255).astype(np.uint8)).resize((side, side))
        face = np.asarray(grey)[..., None] * rng.uniform(0.8, 1.0, size=3)
        x, y = rng.integers(0, width - side), rng.integers(0, height - side)
        canvas[y : y + side, x : x + side] = face.astype(np.uint8)
        folder = root / f"p{i // 20:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(canvas).save(folder / f"{i:04d}.jpg", quality=90)


def _command_seconds(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _time(root: Path, out: Path, repeats: int) -> dict[str, list[float]]:
    commands = {
        "baseline": [sys.executable, "-c", BASELINE, str(root), str(out / "baseline")],
        "fmlkit_w2": [
            sys.executable, "-m", "fmlkit", "-q", "align", str(root), "-o", str(out / "w2"),
            "--detector", "retinaface", "--workers", "2", "--overwrite",
        ],
    }  # fmt: skip
    for args in commands.values():  # warm the page cache and the imports' files
        _command_seconds(args)
    times: dict[str, list[float]] = {k: [] for k in commands}
    for r in range(repeats):
        for key in list(commands) if r % 2 == 0 else reversed(list(commands)):
            times[key].append(_command_seconds(commands[key]))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    machine = f"{platform.node()} · {platform.machine()} · {cpus} cores usable"
    report: dict[str, object] = {"machine": machine, "python": platform.python_version()}
    print(f"machine: {machine}; {args.photos} photos a size\n")
    print("| photos | baseline loop, faces/s | `fmlkit align -j 2`, faces/s | ratio | goal |")
    print("|---|---|---|---|---|")
    ratios = {}
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for name, size in SIZES.items():
            work = Path(tmp) / name.replace("×", "x")
            _photos(work / "photos", args.photos, size)
            times = _time(work / "photos", work, args.repeats)
            base, ours = (statistics.median(times[k]) for k in ("baseline", "fmlkit_w2"))
            aligned = {k: len(list((work / k).rglob("*.png"))) for k in ("baseline", "w2")}
            ratios[name] = base / ours
            print(
                f"| {name} | {aligned['baseline'] / base:.1f} ({aligned['baseline']} faces) "
                f"| {aligned['w2'] / ours:.1f} ({aligned['w2']} faces) "
                f"| **{ratios[name]:.2f}×** | ≥ {GOAL}× |"
            )
            report[name] = {
                "photos": args.photos, "aligned": aligned, "seconds": times, "ratio": ratios[name]
            }  # fmt: skip
    ok = all(r >= GOAL for r in ratios.values())
    print(f"\ngoal {'met' if ok else 'NOT met'}")
    (args.workdir / "align.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
