"""Benchmark `.rec → Parquet` (`rec_to_parquet`) against MXNet's own reader (issue #6).

Run: `make bench` or `.venv/bin/python bench/bench_convert.py [--records 200000]
[--classes 2000] [--shard-size-mb 512]`. Prints a Markdown table and writes
bench/out/convert.json. The MXNet baseline needs `make mxnet-env` (mxnet 1.9.1, numpy < 1.24, in
bench/.mxnet-venv; never a dependency of fmlkit); without it that row is skipped.

The input is an InsightFace flavour-A .rec/.idx written with fmlkit's `RecordWriter`: a header
record 0 (flag 2, labels (N + 1, N + 1 + K)), N image records keyed 1..N with scalar labels
sorted by class, each a real 112 px JPEG (~4 KB; 500 distinct images reused, the record key
appended after the EOI marker so every payload differs), then K identity records. With the file
in the page cache (read once beforehand), each of these runs in a fresh process, in rotation,
median of ``--repeats``; the OS's dirty pages are flushed (`sync`) before each run:

- page-cache read: the .rec read in 8 MiB chunks to the end ("reading the file once");
- copy: the same, each chunk written to a new file beside the Parquet output: what any
  converter pays to write as many bytes on that file system (a floor, not a target);
- MXNet: `MXIndexedRecordIO(idx, rec, 'r')`, `read_idx` + `recordio.unpack` for every key (the
  sum of header labels and image lengths is kept so nothing is skipped);
- fmlkit's reader alone: `RecordReader.read` + `unpack` for every key, the same loop as
  MXNet's (no output; not a target, it shows what the reading side costs);
- fmlkit: `rec_to_parquet(rec, out_dir, overwrite=True)`, with the process's peak resident
  memory (`ru_maxrss` via `os.wait4`) and its peak anonymous memory (`RssAnon` sampled every
  10 ms: ``ru_maxrss`` also counts the pages of the memory-mapped .rec it has touched, which
  are page cache, not memory the process holds).

Seconds are measured inside each child, around the work only (interpreter start and imports
excluded: importing mxnet takes longer than some of the runs); whole-process seconds are
reported beside them. The Parquet output is checked once: N rows, keys 1..N in order, and
equal image bytes and labels for sampled keys.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MXNET_PYTHON = HERE / ".mxnet-venv" / "bin" / "python"
POOL = 500  # distinct JPEGs
TARGET_VS_MXNET = 2.0  # mxnet_s / fmlkit_s ≥ this
TARGET_VS_READ = 2.0  # fmlkit_s / page_cache_s ≤ this

READ = r"""
import json, sys, time
start = time.perf_counter()
total = 0
with open(sys.argv[1], "rb", buffering=0) as f:
    while chunk := f.read(8 << 20):
        total += len(chunk)
print(json.dumps({"seconds": time.perf_counter() - start, "check": total}))
"""

MXNET = r"""
import json, sys, time
from mxnet import recordio
start = time.perf_counter()
record = recordio.MXIndexedRecordIO(sys.argv[1], sys.argv[2], "r")
labels = 0.0
total = 0
for key in record.keys:
    header, image = recordio.unpack(record.read_idx(key))
    labels += float(header.label) if header.flag == 0 else float(header.label[0])
    total += len(image)
record.close()
print(json.dumps({"seconds": time.perf_counter() - start, "check": total, "labels": labels}))
"""

COPY = r"""
import json, sys, time
start = time.perf_counter()
total = 0
with open(sys.argv[1], "rb", buffering=0) as f, open(sys.argv[2], "wb", buffering=0) as g:
    while chunk := f.read(8 << 20):
        total += g.write(chunk)
print(json.dumps({"seconds": time.perf_counter() - start, "check": total}))
"""

FMLKIT_READ = r"""
import json, sys, time
from fmlkit.data.formats.recordio import unpack
from fmlkit.data.formats.recordio_reader import RecordReader
start = time.perf_counter()
labels = 0.0
total = 0
with RecordReader(sys.argv[1]) as reader:
    for key in reader.keys:
        header, image = unpack(reader.read(key))
        labels += header.labels[0]
        total += len(image)
print(json.dumps({"seconds": time.perf_counter() - start, "check": total, "labels": labels}))
"""

FMLKIT = r"""
import json, sys, time
from fmlkit.data.convert.from_rec import rec_to_parquet
start = time.perf_counter()
report = rec_to_parquet(sys.argv[1], sys.argv[2], overwrite=True, shard_bytes=int(sys.argv[3]))
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "check": report.rows, "shards": report.shards}))
"""


def jpeg_pool(size: int = 112, count: int = POOL, seed: int = 0) -> list[bytes]:
    """``count`` distinct noisy gradient JPEGs (quality 85, ~4 KB at 112 px)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    pool = []
    for _ in range(count):
        base = (x * rng.uniform(0.5, 2) + y * rng.uniform(0.5, 2))[..., None]
        base = (base + rng.uniform(0, 255, 3)) % 256 + rng.normal(0, 8, (size, size, 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=85)
        pool.append(buf.getvalue())
    return pool


def image_bytes(pool: list[bytes], key: int) -> bytes:
    """Record ``key``'s image: a pool JPEG with the key appended after its EOI marker."""
    return pool[key % len(pool)] + struct.pack("<Q", key)


def class_of(key: int, records: int, classes: int) -> int:
    return (key - 1) * classes // records


def write_rec(rec: Path, records: int, classes: int, pool: list[bytes]) -> None:
    """A flavour-A .rec/.idx: header record, images 1..N sorted by class, identity records."""
    from fmlkit.data.formats.recordio import IRHeader, RecordWriter, pack

    first_id = records + 1
    with RecordWriter(rec, rec.with_suffix(".idx")) as writer:
        writer.write(0, pack(IRHeader(2, (float(first_id), float(first_id + classes)))))
        for key in range(1, records + 1):
            label = float(class_of(key, records, classes))
            writer.write(key, pack(IRHeader(0, label, key, 0), image_bytes(pool, key)))
        for c in range(classes):  # image keys of class c: [start, end)
            start, end = -(-c * records // classes) + 1, -(-(c + 1) * records // classes) + 1
            writer.write(first_id + c, pack(IRHeader(2, (float(start), float(end)), c, 0)))


def _rss_anon(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:  # noqa: PTH123
            for line in f:
                if line.startswith(b"RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_child(args: list[str]) -> dict[str, float]:
    """Run one child; its JSON line, plus wall seconds, CPU seconds and peak memory (bytes)."""
    os.sync()  # flush the previous run's dirty pages before timing this one
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE)
    peak_anon = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        peak_anon = max(peak_anon, _rss_anon(proc.pid))
        time.sleep(0.01)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    if proc.returncode:
        raise SystemExit(f"{args[:3]} failed with exit code {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result.update(wall=wall, peak_rss=usage.ru_maxrss * 1024, peak_anon=peak_anon)
    result.update(user_s=usage.ru_utime, sys_s=usage.ru_stime)
    return result


def verify(out_dir: Path, records: int, classes: int, pool: list[bytes]) -> None:
    """N rows, keys 1..N in order, and equal bytes and labels for sampled keys."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from fmlkit.data.formats.parquet import iter_batches, read_manifest

    manifest = read_manifest(out_dir)
    assert manifest.rows == records, (manifest.rows, records)
    assert manifest.classes == classes, (manifest.classes, classes)
    keys = np.concatenate([b.column("key").to_numpy() for b in iter_batches(out_dir, ["key"])])
    assert len(keys) == records and (keys == np.arange(1, records + 1)).all()
    rng = np.random.default_rng(1)
    sample = {1, records, *rng.integers(1, records + 1, 20).tolist()}
    seen = set()
    for batch in iter_batches(out_dir):
        hit = pc.is_in(batch.column("key"), value_set=pa.array(sorted(sample)))
        for row in batch.filter(hit).to_pylist():
            key = row["key"]
            assert row["image"]["bytes"] == image_bytes(pool, key), key
            assert row["label"] == class_of(key, records, classes), key
            seen.add(key)
    assert seen == sample, sample - seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--classes", type=int, default=2_000)
    parser.add_argument("--shard-size-mb", type=float, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=HERE / "out")
    parser.add_argument(
        "--out-dir", type=Path, help="where the Parquet output and the copy go (default: workdir)"
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    shard_bytes = int(args.shard_size_mb * 2**20)
    have_mxnet = MXNET_PYTHON.is_file()
    report: dict[str, object] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "records": args.records,
        "classes": args.classes,
        "shard_bytes": shard_bytes,
    }
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=args.workdir)))
        dest = work
        if args.out_dir is not None:
            args.out_dir.mkdir(parents=True, exist_ok=True)
            dest = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=args.out_dir)))
        report["output_on"] = str(dest)
        rec, out_dir, copy = work / "train.rec", dest / "parquet", dest / "copy.rec"
        start = time.perf_counter()
        pool = jpeg_pool()
        write_rec(rec, args.records, args.classes, pool)
        rec_bytes = rec.stat().st_size
        report.update(rec_bytes=rec_bytes, build_s=time.perf_counter() - start)
        report["jpeg_bytes_mean"] = statistics.fmean(len(p) for p in pool)
        print(
            f"built {rec} ({rec_bytes / 2**20:,.0f} MiB, {args.records:,} images of "
            f"~{report['jpeg_bytes_mean']:,.0f} B, {args.classes:,} classes) in "
            f"{report['build_s']:.0f} s",
            flush=True,
        )
        for path in (rec, rec.with_suffix(".idx")):  # warm the page cache
            with path.open("rb", buffering=0) as f:
                while f.read(8 << 20):
                    pass

        commands = {
            "read": [sys.executable, "-c", READ, str(rec)],
            "copy": [sys.executable, "-c", COPY, str(rec), str(copy)],
            "reader": [sys.executable, "-c", FMLKIT_READ, str(rec)],
            "fmlkit": [sys.executable, "-c", FMLKIT, str(rec), str(out_dir), str(shard_bytes)],
        }
        if have_mxnet:
            commands["mxnet"] = [str(MXNET_PYTHON), "-c", MXNET, str(rec.with_suffix(".idx")),
                                 str(rec)]  # fmt: skip
        else:
            print(f"no {MXNET_PYTHON} (run `make mxnet-env`): MXNet baseline skipped")
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in commands}
        for round_ in range(args.repeats):
            for name, command in commands.items():
                if name == "fmlkit" and out_dir.exists():
                    shutil.rmtree(out_dir)
                copy.unlink(missing_ok=True)
                result = run_child(command)
                runs[name].append(result)
                print(
                    f"round {round_ + 1}: {name:6s} {result['seconds']:6.2f} s "
                    f"(process {result['wall']:.2f} s, CPU user {result['user_s']:.2f} s + "
                    f"system {result['sys_s']:.2f} s)",
                    flush=True,
                )
                if name == "fmlkit" and round_ == 0:
                    verify(out_dir, args.records, args.classes, pool)
                    print("fmlkit output verified", flush=True)
        checks = {name: {r["check"] for r in rs} for name, rs in runs.items()}
        assert checks["read"] == checks["copy"] == {rec_bytes}
        assert checks["fmlkit"] == {args.records}
        if have_mxnet:  # every image byte went through MXNet's reader
            expected = sum(len(image_bytes(pool, k)) for k in range(1, args.records + 1))
            assert checks["mxnet"] == {expected}, (checks["mxnet"], expected)
            assert checks["reader"] == {expected}, (checks["reader"], expected)
        out_bytes = sum(p.stat().st_size for p in out_dir.glob("part-*.parquet"))
        report["parquet_bytes"] = out_bytes

    def med(name: str, what: str = "seconds") -> float:
        return statistics.median(r[what] for r in runs[name])

    def spread(name: str) -> str:
        values = [r["seconds"] for r in runs[name]]
        return f"{min(values):.2f}–{max(values):.2f}"

    report["runs"] = runs
    read_s, ours_s = med("read"), med("fmlkit")
    mx_s = med("mxnet") if have_mxnet else float("nan")
    vs_mxnet, vs_read = mx_s / ours_s, ours_s / read_s
    peak_rss = max(r["peak_rss"] for r in runs["fmlkit"])
    peak_anon = max(r["peak_anon"] for r in runs["fmlkit"])
    shards = runs["fmlkit"][0]["shards"]
    report["median"] = {
        "read_s": read_s,
        "copy_s": med("copy"),
        "mxnet_s": mx_s,
        "reader_s": med("reader"),
        "fmlkit_s": ours_s,
    }
    report["ratios"] = {"mxnet_over_fmlkit": vs_mxnet, "fmlkit_over_read": vs_read}
    report["fmlkit_peak_rss"], report["fmlkit_peak_anon"] = peak_rss, peak_anon

    mib = 2**20
    print(
        f"\nmachine: {report['machine']}, Python {report['python']}; {args.records:,} records, "
        f"{rec_bytes / mib:,.0f} MiB .rec; median of {args.repeats}\n"
    )
    print("| what (page cache warm) | seconds (median) | range | process s | ratio | target |")
    print("|---|---|---|---|---|---|")
    print(
        f"| read the .rec once, 8 MiB chunks | {read_s:.2f} | {spread('read')} | "
        f"{med('read', 'wall'):.2f} | 1.00× | |"
    )
    print(
        f"| copy the .rec to a new file beside the output (floor for writing) | "
        f"{med('copy'):.2f} | {spread('copy')} | {med('copy', 'wall'):.2f} | "
        f"{med('copy') / read_s:.2f}× | |"
    )
    if have_mxnet:
        print(
            f"| MXNet `MXIndexedRecordIO.read_idx` + `recordio.unpack`, all keys | {mx_s:.2f} | "
            f"{spread('mxnet')} | {med('mxnet', 'wall'):.2f} | {mx_s / read_s:.2f}× | |"
        )
    print(
        f"| fmlkit `RecordReader.read` + `unpack`, all keys (no output) | {med('reader'):.2f} | "
        f"{spread('reader')} | {med('reader', 'wall'):.2f} | {med('reader') / read_s:.2f}× | |"
    )
    print(
        f"| fmlkit `rec_to_parquet` ({shards} shard(s), {out_bytes / mib:,.0f} MiB written) | "
        f"{ours_s:.2f} | {spread('fmlkit')} | {med('fmlkit', 'wall'):.2f} | "
        f"**{vs_read:.2f}×** | ≤ {TARGET_VS_READ:g}× |"
    )
    if have_mxnet:
        print(f"| MXNet ÷ fmlkit | | | | **{vs_mxnet:.2f}×** | ≥ {TARGET_VS_MXNET:g}× |")
    print(
        f"\nfmlkit peak memory: {peak_rss / mib:,.0f} MiB resident (ru_maxrss, with the touched "
        f"pages of the mapped .rec), {peak_anon / mib:,.0f} MiB anonymous; shard size "
        f"{shard_bytes / mib:,.0f} MiB, dataset {rec_bytes / mib:,.0f} MiB"
    )
    met = {
        "vs_mxnet": have_mxnet and vs_mxnet >= TARGET_VS_MXNET,
        "vs_read": vs_read <= TARGET_VS_READ,
        "memory_rss_below_shard": peak_rss <= shard_bytes,
        "memory_anon_below_shard": peak_anon <= shard_bytes,
    }
    report["targets_met"] = met
    print("targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in met.items()))
    (args.workdir / "convert.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
