"""How well `fmlkit clean` finds planted label noise with a model trained on the noisy data
itself (issue #24's quality goals), beside mlvu2020's rule on the same embeddings.

Run: `.venv/bin/python bench/bench_clean_quality.py` from the repository root. It runs
`fmlkit run pipelines/clean.yaml` (stages already up to date are skipped), then reads
`clean/decisions` (images.csv, classes.csv, summary.json with the scores against the truth)
and `clean/data.truth.csv`, and prints Markdown:

- fmlkit's decisions against the truth (drop + relabel; with review), split identities found
  as merges and false merge groups, mixed classes found;
- the baseline, mlvu2020's rule on the same own similarities: drop at ≤ 0.30, review at
  ≤ 0.60 (both counted as found), no relabel;
- the curves summary.json holds (own-similarity threshold → precision/recall; merge
  threshold → split identities found / false groups);
- the two models' verification accuracy on the same held-out pairs (noisy, cleaned).

Goals (docs/benchmarks.md): mislabel precision and recall ≥ 0.9; ≥ 0.9 of split identities
found as merges with ≤ 1 false merge group per 1,000 classes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "clean"


def _ratio(part: int, whole: int) -> str:
    return f"{part / whole:.3f}" if whole else "–"


def _accuracy(folder: Path) -> str:
    """accuracy ± std of the first pair list in an evaluate folder's metrics.json."""
    metrics = json.loads((folder / "metrics.json").read_text())
    first = next(v for v in metrics.values() if isinstance(v, dict) and "accuracy" in v)
    return f"{100 * first['accuracy']:.2f} ± {100 * first['accuracy_std']:.2f} %"


def main() -> int:
    subprocess.run(
        [sys.executable, "-m", "fmlkit", "run", "pipelines/clean.yaml"], cwd=ROOT, check=True
    )
    summary = json.loads((OUT / "decisions/summary.json").read_text())
    t = summary["truth"]
    images = pd.read_csv(OUT / "decisions/images.csv", keep_default_na=False)
    truth = pd.read_csv(OUT / "data.truth.csv", keep_default_na=False).set_index("file_name")
    mislabel = images["file_name"].map(truth["kind"]).eq("mislabel").to_numpy()
    own = pd.to_numeric(images["own_similarity"], errors="coerce").to_numpy()
    found = own <= 0.60  # mlvu2020: delete at ≤ 0.30, send ≤ 0.60 to a person
    tp = int((found & mislabel).sum())
    print("| rule | found | precision | recall |")
    print("|---|---|---|---|")
    print(f"| fmlkit clean: drop + relabel | {t['found']} | {t['mislabel_precision']} "
          f"| {t['mislabel_recall']} |")  # fmt: skip
    print(f"| fmlkit clean: drop + relabel + review | {t['flagged']} | "
          f"{t['flagged_precision']} | {t['flagged_recall']} |")  # fmt: skip
    print(f"| baseline, mlvu2020: own similarity ≤ 0.60 | {int(found.sum())} | "
          f"{_ratio(tp, int(found.sum()))} | {_ratio(tp, int(mislabel.sum()))} |")  # fmt: skip
    print(f"\nplanted mislabels {t['mislabels_planted']}; relabels naming the true identity "
          f"{t['relabel_right']}")  # fmt: skip
    print(f"split identities {t['split_identities_planted']}: found "
          f"{t['split_identities_found']}; false merge groups {t['merge_groups_false']} "
          f"({t['merge_groups_false_per_1000_classes']} per 1,000 classes)")  # fmt: skip
    print(f"mixed classes {t['mixed_classes_planted']}: found {t['mixed_classes_found']}; "
          f"false splits {t['splits_false']}")  # fmt: skip
    print("\n| own similarity < t | precision | recall |\n|---|---|---|")
    for point in t["drop_curve"]:
        if 0.2 <= point["threshold"] <= 0.8:
            print(f"| {point['threshold']:.2f} | {point['precision']} | {point['recall']} |")
    print("\n| merge above t | split identities found | false merge groups |\n|---|---|---|")
    for point in t["merge_curve"]:
        if 0.6 <= point["threshold"] <= 0.95:
            print(f"| {point['threshold']:.2f} | {point['split_identities_found']} | "
                  f"{point['merge_groups_false']} |")  # fmt: skip
    print(f"\nverification accuracy on the held-out pairs: noisy {_accuracy(OUT / 'eval_noisy')}"
          f", cleaned {_accuracy(OUT / 'eval_clean')}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
