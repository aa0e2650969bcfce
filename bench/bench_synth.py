"""Benchmark `fmlkit synth` on one core at 112 px against the 500 images/s target (issue #2).

Run: `make bench` or `.venv/bin/python bench/bench_synth.py [--images 1000] [--repeats 5]`.
Prints a Markdown table (median of the repeats) and writes bench/out/synth.json.

Besides the end-to-end rate (render, encode, pHash separation check, write), the same run
measures two floors on the same machine: rendering alone (no encode or I/O), and JPEG
encode + file write of an already-rendered image (no rendering), to show where the time goes.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

TARGET_IMAGES_PER_S = 500.0


def _one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        return "pinned to 1 core"
    return "not pinned (no sched_setaffinity)"


def _end_to_end(workdir: Path, images: int, seed: int) -> float:
    from fmlkit.data.synth.synth import generate_synthetic_dataset

    out = workdir / f"e2e{seed}"
    per_id = 40
    report = generate_synthetic_dataset(
        out,
        identities=max(1, images // per_id),
        images_per_identity=per_id,
        seed=seed,
        defects=False,
    )
    shutil.rmtree(out)
    report.truth_path.unlink()
    return report.files / report.seconds


def _render_only(images: int, seed: int) -> float:
    import numpy as np

    from fmlkit.data.synth.faces import create_identity, render_face

    idents = [
        create_identity(np.random.default_rng([seed, i])) for i in range(max(1, images // 40))
    ]
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for k in range(images):
        render_face(idents[k % len(idents)], rng, 112)
    return images / (time.perf_counter() - start)


def _encode_write_only(workdir: Path, images: int, seed: int) -> float:
    import numpy as np

    from fmlkit.data.synth.faces import create_identity, render_face

    img = render_face(create_identity(np.random.default_rng(seed)), np.random.default_rng(seed))
    out = workdir / f"enc{seed}"
    out.mkdir()
    start = time.perf_counter()
    for k in range(images):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        (out / f"{k:05d}.jpg").write_bytes(buf.getvalue())
    rate = images / (time.perf_counter() - start)
    shutil.rmtree(out)
    return rate


def _measure(workdir: Path, images: int, repeats: int) -> dict[str, list[float]]:
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[float]] = {"end_to_end": [], "render_only": [], "encode_write": []}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        _end_to_end(Path(tmp), 80, seed=999)  # warm imports and caches
        for r in range(repeats):
            results["end_to_end"].append(_end_to_end(Path(tmp), images, seed=r))
            results["render_only"].append(_render_only(images, seed=r))
            results["encode_write"].append(_encode_write_only(Path(tmp), images, seed=r))
    return results


LABELS = {
    "end_to_end": "`fmlkit synth` end to end (render + encode + pHash checks + write)",
    "render_only": "rendering only (no encode, no I/O)",
    "encode_write": "JPEG encode + file write only (no rendering)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path("bench/out"),
        help="disk folder the images are written to",
    )
    args = parser.parse_args()
    pinning = _one_core()
    places = {"disk": args.workdir}
    if Path("/dev/shm").is_dir():  # memory-backed: the CPU rate without the disk's
        places["tmpfs"] = Path("/dev/shm") / f"fmlkit-bench-{os.getpid()}"
    machine = f"{platform.node()} · {platform.machine()} · {os.cpu_count()} cores"
    print(f"machine: {machine}; {pinning}; {args.images} images × {args.repeats} repeats")
    print("| written to | measurement | images/s (median) | range | ratio to 500/s |")
    print("|---|---|---|---|---|")
    report: dict[str, object] = {
        "machine": machine,
        "pinning": pinning,
        "images": args.images,
        "target": TARGET_IMAGES_PER_S,
    }
    for place, workdir in places.items():
        runs = _measure(workdir, args.images, args.repeats)
        if place == "tmpfs":
            shutil.rmtree(workdir, ignore_errors=True)
        median = {k: statistics.median(v) for k, v in runs.items()}
        for key, label in LABELS.items():
            ratio = median[key] / TARGET_IMAGES_PER_S
            cell = f"**{ratio:.2f}×**" if key == "end_to_end" else ""
            print(
                f"| {place} | {label} | {median[key]:.0f} | "
                f"{min(runs[key]):.0f}–{max(runs[key]):.0f} | {cell} |"
            )
        report[place] = {
            "workdir": str(workdir),
            "runs": runs,
            "median": median,
            "ratio": median["end_to_end"] / TARGET_IMAGES_PER_S,
        }
    args.workdir.mkdir(parents=True, exist_ok=True)
    (args.workdir / "synth.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
