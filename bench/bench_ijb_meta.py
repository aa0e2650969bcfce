"""Benchmark reading IJB-C's meta files (`fmlkit.data.formats.ijb`) and scoring its pairs
(`fmlkit.eval.templates`), issue #25; and the whole `fmlkit evaluate --embeddings E --ijb DIR`
command on that folder with random crop embeddings.

Run: `.venv/bin/python bench/bench_ijb_meta.py [--dir /tmp/ijbc_bench] [--pairs 15658489]
[--images 469375]`. Writes an IJB-C-sized meta folder (generated once, kept in ``--dir``),
then times each read in a fresh process and prints seconds and peak memory (max RSS of that
process, interpreter and imports included); also writes bench/out/ijb_meta.json.

Sizes are IJB-C's: 469,375 images in 23,124 templates, 15,658,489 template pairs. The
baseline is ``np.loadtxt`` on the pair file's first 1M lines, scaled to the whole file. The
scoring rows time `template_features`, `pair_scores` and `tar_at_far_ijb` on the generated
protocol with random 512-d image features (``--dim``), in one process.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TEMPLATES = 23_124
OUT = Path(__file__).parent / "out"


def make_meta(meta: Path, images: int, pairs: int, seed: int = 0) -> None:
    """IJB-C-like meta files in ``meta`` (skipped when they are there with the right size)."""
    import pandas as pd

    meta.mkdir(parents=True, exist_ok=True)
    marker = meta / f"made_{images}_{pairs}"
    if marker.exists():
        return
    rng = np.random.default_rng(seed)
    names = np.char.add(np.arange(1, images + 1).astype(str), ".jpg")
    templates = np.sort(rng.integers(1, TEMPLATES + 1, images))
    medias = templates * 10 + rng.integers(0, 4, images)
    faces = pd.DataFrame({"name": names, "template": templates, "media": medias})
    faces.to_csv(meta / "ijbc_face_tid_mid.txt", sep=" ", header=False, index=False)
    points = rng.uniform(20, 90, (images, 10)).round(3)
    landmarks = pd.DataFrame(points).round(3)
    landmarks.insert(0, "name", names)
    landmarks["score"] = rng.uniform(0.5, 1, images).round(6)
    landmarks.to_csv(meta / "ijbc_name_5pts_score.txt", sep=" ", header=False, index=False)
    with (meta / "ijbc_template_pair_label.txt").open("w") as f:
        for begin in range(0, pairs, 1 << 21):
            size = min(1 << 21, pairs - begin)
            block = pd.DataFrame(
                {
                    "a": rng.integers(1, TEMPLATES + 1, size),
                    "b": rng.integers(1, TEMPLATES + 1, size),
                    "label": (rng.random(size) < 19_557 / 15_658_489).astype(np.int8),
                }
            )
            block.to_csv(f, sep=" ", header=False, index=False)
    marker.touch()


def timed(code: str) -> dict[str, float]:
    """Seconds and peak RSS (MiB) of ``code`` run in a fresh interpreter (imports excluded
    from the seconds, included in the memory)."""
    script = (
        "import resource, time, json\n"
        "import numpy as np\n"
        "from fmlkit.data.formats.ijb import read_ijb\n"
        "from fmlkit.data.formats.spaced_text import read_columns\n"
        "start = time.perf_counter()\n"
        f"{code}\n"
        "seconds = time.perf_counter() - start\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(json.dumps({'seconds': seconds, 'peak_mib': peak}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    *notes, last = out.stdout.strip().splitlines()
    for note in notes:
        print(note)
    return json.loads(last)


def whole_command(folder: Path, images: int, dim: int) -> dict[str, float]:
    """Wall seconds and peak RSS of ``fmlkit evaluate --embeddings E --ijb DIR -o OUT`` on the
    generated folder: the one command a user runs from cached or precomputed crop embeddings
    (random ``dim``-d, written once into ``folder``; the embedding itself is not timed)."""
    table = folder / f"embeddings_{dim}.parquet"
    if not table.exists():
        from fmlkit.data.formats.embeddings import write_embeddings

        rng = np.random.default_rng(1)
        names = np.char.add(np.arange(1, images + 1).astype(str), ".jpg")
        write_embeddings(table, names, None, rng.standard_normal((images, dim), np.float32))
    out = folder / "eval"
    script = (
        "import json, resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        f"subprocess.run([sys.executable, '-m', 'fmlkit', '-q', 'evaluate', '--embeddings', "
        f"{str(table)!r}, '--ijb', {str(folder)!r}, '-o', {str(out)!r}, '--overwrite'], "
        "check=True)\n"
        "seconds = time.perf_counter() - start\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps({'seconds': seconds, 'peak_mib': peak}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/ijbc_bench"))
    parser.add_argument("--images", type=int, default=469_375)
    parser.add_argument("--pairs", type=int, default=15_658_489)
    parser.add_argument("--baseline-lines", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    args = parser.parse_args()
    meta = args.dir / "meta"
    start = time.perf_counter()
    make_meta(meta, args.images, args.pairs)
    print(f"meta files ready in {time.perf_counter() - start:.1f} s ({meta})")
    pair_file = meta / "ijbc_template_pair_label.txt"
    results = {
        "pair file": timed(
            f"read_columns(__import__('pathlib').Path({str(pair_file)!r}), "
            "('int', 'int', 'label'), 'a b label')"
        ),
        "face_tid_mid + landmarks": timed(
            f"import fmlkit.data.formats.ijb as m, pathlib\nmeta = pathlib.Path({str(meta)!r})\n"
            "images = m._read_faces(meta / 'ijbc_face_tid_mid.txt')[0]\n"
            "m._read_landmarks(meta / 'ijbc_name_5pts_score.txt', images)"
        ),
        "read_ijb (all)": timed(f"read_ijb({str(args.dir)!r}, crops=False)"),
    }
    results["scoring: pool, pair scores, TAR@FAR"] = timed(
        f"from fmlkit.eval.templates import template_features, pair_scores, tar_at_far_ijb\n"
        f"p = read_ijb({str(args.dir)!r}, crops=False)\n"
        "x = np.random.default_rng(0).standard_normal("
        f"(p.images.size, {args.dim}), dtype=np.float32)\n"
        "marks = [time.perf_counter()]\n"
        "ids, feats = template_features(x, p.templates, p.medias)\n"
        "marks.append(time.perf_counter())\n"
        "s = pair_scores(ids, feats, p.pairs); marks.append(time.perf_counter())\n"
        "tar_at_far_ijb(p.labels, s); marks.append(time.perf_counter())\n"
        "print('pool %.2f s, pair scores %.2f s, TAR@FAR %.2f s' % tuple(np.diff(marks)))\n"
        "start = marks[0]"
    )
    results["whole command: fmlkit evaluate --embeddings E --ijb DIR"] = whole_command(
        args.dir, args.images, args.dim
    )
    baseline = timed(
        "import itertools\n"
        f"with open({str(pair_file)!r}) as f:\n"
        f"    np.loadtxt(itertools.islice(f, {args.baseline_lines}), dtype=np.int64)"
    )
    scale = args.pairs / args.baseline_lines
    results["np.loadtxt pair file (scaled)"] = {
        "seconds": baseline["seconds"] * scale,
        "peak_mib": float("nan"),
    }
    print(f"\n{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print("| read | seconds | peak RSS (MiB) |\n|---|---:|---:|")
    for name, result in results.items():
        peak = "–" if np.isnan(result["peak_mib"]) else f"{result['peak_mib']:.0f}"
        print(f"| {name} | {result['seconds']:.2f} | {peak} |")
    OUT.mkdir(exist_ok=True)
    (OUT / "ijb_meta.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
