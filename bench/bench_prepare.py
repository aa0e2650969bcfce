"""Benchmark `fmlkit prepare` against easy_metric_learning's way of scanning (issue #3).

Run: `make bench` or `.venv/bin/python bench/bench_prepare.py [--faces 6000] [--photos 600]
[--repeats 5]`. Prints Markdown tables (medians) and writes bench/out/prepare.json.

On the same files (112 px synthetic faces, ~6,000 by default), one run times:

- the baseline, easy_metric_learning's way: one process, ``Image.open(p).size`` for the size,
  ``imagehash.phash(Image.open(p))``, ``hashlib.md5`` of the bytes, rows written with pandas;
- ``fmlkit prepare --hashes --workers 2`` and ``--workers 1``,

each as a fresh command (interpreter start and imports included, as a user runs them), in
alternating order after one untimed warm-up of each, so the page cache holds the files for
all. The ratio baseline time / fmlkit time must reach 1.8 with 2 workers and 1.0 with one.

Then the physical limit: the pure JPEG-decode rate of the same files (read the bytes, decode
with Pillow, one process) next to `prepare`'s images/s per core, for the faces and for
640×480 photos. "Decode + pHash" adds the work every row needs on top of decoding (greyscale,
Lanczos resize to 32×32, DCT), measured the same way.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_WORKERS_2 = 1.8
TARGET_WORKERS_1 = 1.0

BASELINE = r"""
import hashlib, sys
from pathlib import Path
import imagehash, pandas as pd
from PIL import Image

root = Path(sys.argv[1])
rows = []
for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
    for p in sorted(label_dir.iterdir()):
        width, height = Image.open(p).size
        phash = str(imagehash.phash(Image.open(p)))
        md5 = hashlib.md5(p.read_bytes()).hexdigest()
        rows.append((f"{label_dir.name}/{p.name}", label_dir.name, width, height, md5, phash))
pd.DataFrame(rows, columns=["file_name", "label", "width", "height", "md5", "phash"]).to_csv(
    sys.argv[2], index=False
)
"""


def _faces(root: Path, count: int) -> None:
    from fmlkit.data.synth.synth import generate_synthetic_dataset

    per_id = 20
    generate_synthetic_dataset(
        root, identities=max(1, count // per_id), images_per_identity=per_id, defects=False,
        workers=os.cpu_count() or 1,
    )  # fmt: skip


def _photos(root: Path, count: int) -> None:
    """640×480 JPEG "photos": synthetic faces rendered at 640 px, cropped, quality 90."""
    import numpy as np

    from fmlkit.data.synth.faces import create_identity, render_face

    per_id = 20
    for i in range(max(1, count // per_id)):
        ident = create_identity(np.random.default_rng([7, i]))
        rng = np.random.default_rng([8, i])
        folder = root / f"p{i:04d}"
        folder.mkdir(parents=True)
        for k in range(per_id):
            img = render_face(ident, rng, 640).crop((0, 80, 640, 560))
            img.save(folder / f"{k:03d}.jpg", quality=90)


def _command_seconds(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _commands(root: Path, out: Path) -> dict[str, list[str]]:
    fmlkit = [sys.executable, "-m", "fmlkit", "-q", "prepare", str(root), "--hashes", "--overwrite"]
    return {
        "baseline": [sys.executable, "-c", BASELINE, str(root), str(out / "baseline.csv")],
        "workers_2": [*fmlkit, "--workers", "2", "-o", str(out / "w2.csv")],
        "workers_1": [*fmlkit, "--workers", "1", "-o", str(out / "w1.csv")],
    }


def _time_commands(root: Path, out: Path, repeats: int) -> dict[str, list[float]]:
    commands = _commands(root, out)
    for args in commands.values():  # warm the page cache and the imports' files
        _command_seconds(args)
    times: dict[str, list[float]] = {k: [] for k in commands}
    for r in range(repeats):
        order = list(commands) if r % 2 == 0 else list(reversed(commands))
        for key in order:
            times[key].append(_command_seconds(commands[key]))
    return times


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.jpg"))


def _decode_rate(files: list[Path], repeats: int, with_phash: bool) -> list[float]:
    """Images/s of read + decode (+ the pHash work) in this one process."""
    from PIL import Image

    from fmlkit.data.formats.hashing import check_fast_phash, compute_hashes

    check_fast_phash()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for p in files:
            with Image.open(io.BytesIO(p.read_bytes())) as img:
                img.load()
                if with_phash:
                    compute_hashes(img, ["phash"])
        rates.append(len(files) / (time.perf_counter() - start))
    return rates


def _scan_rate(root: Path, out: Path, workers: int, repeats: int) -> list[float]:
    from fmlkit.data.prepare.scan import scan_dataset

    return [
        scan_dataset(root, out / "scan.csv", workers=workers).images_per_second
        for _ in range(repeats)
    ]


def _median_range(values: list[float], fmt: str = "{:.0f}") -> tuple[str, str]:
    return fmt.format(
        statistics.median(values)
    ), f"{fmt.format(min(values))}–{fmt.format(max(values))}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=6000)
    parser.add_argument("--photos", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    machine = f"{platform.node()} · {platform.machine()} · {cpus} cores usable"
    report: dict[str, object] = {"machine": machine, "python": platform.python_version()}
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        faces, photos = work / "faces", work / "photos"
        _faces(faces, args.faces)
        _photos(photos, args.photos)
        n_faces, n_photos = len(_files(faces)), len(_files(photos))
        print(f"machine: {machine}; {n_faces} faces (112 px), {n_photos} photos (640×480)\n")

        times = _time_commands(faces, work, args.repeats)
        base = statistics.median(times["baseline"])
        print(
            "| command (whole process, 112 px faces) | seconds (median) | range | ratio | target |"
        )
        print("|---|---|---|---|---|")
        targets = {"baseline": None, "workers_2": TARGET_WORKERS_2, "workers_1": TARGET_WORKERS_1}
        labels = {
            "baseline": "easy_metric_learning's way (1 process, 2 opens + md5)",
            "workers_2": "`fmlkit prepare --hashes --workers 2`",
            "workers_1": "`fmlkit prepare --hashes --workers 1`",
        }
        ratios = {}
        for key, label in labels.items():
            med, rng = _median_range(times[key], "{:.2f}")
            ratios[key] = base / statistics.median(times[key])
            target = targets[key]
            cell = f"**{ratios[key]:.2f}×**" if target else "1.00×"
            print(f"| {label} | {med} | {rng} | {cell} | {f'≥ {target}×' if target else ''} |")
        report["commands"] = {"images": n_faces, "seconds": times, "ratio": ratios}

        print(
            "\n| files | pure decode, 1 core | decode + pHash, 1 core | prepare -j 1 "
            "| prepare -j 2, per core |"
        )
        print("|---|---|---|---|---|")
        rates: dict[str, dict[str, list[float]]] = {}
        for name, root in (("112 px faces", faces), ("640×480 photos", photos)):
            files = _files(root)
            r = {
                "decode": _decode_rate(files, args.repeats, with_phash=False),
                "decode_phash": _decode_rate(files, args.repeats, with_phash=True),
                "prepare_1": _scan_rate(root, work, 1, args.repeats),
                "prepare_2_per_core": [v / 2 for v in _scan_rate(root, work, 2, args.repeats)],
            }
            rates[name] = r
            med = {k: statistics.median(v) for k, v in r.items()}
            cells = [f"{med[k]:,.0f} img/s" for k in r]
            cells[2] += f" ({med['prepare_1'] / med['decode']:.0%} of decode)"
            cells[3] += f" ({med['prepare_2_per_core'] / med['decode']:.0%})"
            print(f"| {name} | " + " | ".join(cells) + " |")
        report["rates"] = rates
    ok = ratios["workers_2"] >= TARGET_WORKERS_2 and ratios["workers_1"] >= TARGET_WORKERS_1
    print(f"\ntargets {'met' if ok else 'NOT met'}")
    (args.workdir / "prepare.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
