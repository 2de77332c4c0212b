"""Pool the per-seed AUCs of several zoo-vs-FuxiCTR result files into one paired estimate per backbone.

A single zoo run measures two seeds; the AUC bar (ours >= FuxiCTR - 0.001) sits inside the seed-to-seed noise
(FuxiCTR's own same-seed runs differ by up to 0.003), so extra seeds are run as separate, AUC-only result files
(``zoo_vs_fuxictr.py --seeds 5,6,7 --name zoo_vs_fuxictr_seedsN``). This script reads them all and, per model,
pairs ours and FuxiCTR's test AUC seed by seed (a seed measured in more than one file counts once: the first file
listed wins), then reports the mean paired difference, its standard error and whether the bar is met by the mean.

Every input must have trained ours at the same precision and the same experiment YAMLs; the script refuses to
pool files whose ``settings`` differ in anything but the seeds and the feed of the extra seeds.

Writes benchmarks/results/zoo_vs_fuxictr_pooled.json.

Usage: python -m benchmarks.zoo_seed_pool [zoo_vs_fuxictr zoo_vs_fuxictr_seeds zoo_vs_fuxictr_seeds2 ...]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics

from benchmarks.lib.common import RESULTS, write_result
from benchmarks.lib.zoo_report import AUC_TOLERANCE

DEFAULT_INPUTS = ["zoo_vs_fuxictr", "zoo_vs_fuxictr_seeds", "zoo_vs_fuxictr_seeds2", "zoo_vs_fuxictr_seeds3"]
# settings that may differ between pooled files (which seeds, how their extra seeds were fed)
VARYING = {"seed", "seeds", "extra_seed_feed", "fuxictr_single_seed"}


def _settings(payload: dict) -> dict:
    return {k: v for k, v in payload.get("settings", {}).items() if k not in VARYING}


def paired_seeds(payloads: dict[str, dict]) -> dict[str, list[dict]]:
    """model -> [{seed, ours_auc, fuxictr_auc, diff, source}], one entry per seed both sides measured."""
    pairs: dict[str, dict[int, dict]] = {}
    for source, payload in payloads.items():
        for row in payload["rows"]:
            ours = dict(zip(row["ours_seeds"], row["ours_auc_per_seed"]))
            fuxi = dict(zip(row["fuxictr_seeds"], row["fuxictr_auc_per_seed"]))
            seen = pairs.setdefault(row["model"], {})
            for seed in sorted(set(ours) & set(fuxi)):
                if seed not in seen:
                    seen[seed] = {"seed": seed, "ours_auc": ours[seed], "fuxictr_auc": fuxi[seed],
                                  "diff": ours[seed] - fuxi[seed], "source": source}
    return {model: list(by_seed.values()) for model, by_seed in pairs.items()}


def summarise(model: str, pairs: list[dict], tolerance: float = AUC_TOLERANCE) -> dict:
    diffs = [p["diff"] for p in pairs]
    n = len(diffs)
    mean = statistics.fmean(diffs)
    sd = statistics.stdev(diffs) if n > 1 else None
    se = sd / math.sqrt(n) if sd is not None else None
    return {"model": model, "seeds": [p["seed"] for p in pairs], "n": n,
            "ours_auc": statistics.fmean(p["ours_auc"] for p in pairs),
            "fuxictr_auc": statistics.fmean(p["fuxictr_auc"] for p in pairs),
            "auc_diff": mean, "diff_sd": sd, "diff_se": se,
            # the bar lies within two standard errors of the mean: the seeds cannot tell on which side we are
            "bar_within_2se": None if se is None else abs(mean + tolerance) <= 2 * se,
            "auc_target_met": mean >= -tolerance, "pairs": pairs}


def markdown(rows: list[dict]) -> str:
    lines = ["| model | seeds | ours AUC | FuxiCTR AUC | mean paired diff | SE | ≥ FuxiCTR − 0.001 |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        se = f"{r['diff_se']:.4f}" if r["diff_se"] is not None else "–"
        verdict = "met" if r["auc_target_met"] else "missed"
        if r["bar_within_2se"]:
            verdict += " (bar within 2 SE)"
        lines.append(f"| {r['model']} | {r['n']} | {r['ours_auc']:.5f} | {r['fuxictr_auc']:.5f} | "
                     f"{r['auc_diff']:+.5f} | {se} | {verdict} |")
    return "\n".join(lines)


def load(names: list[str]) -> dict[str, dict]:
    payloads = {}
    for name in names:
        path = RESULTS / f"{name}.json"
        if path.exists():
            payloads[name] = json.loads(path.read_text())
    if not payloads:
        raise SystemExit(f"none of {names} is in {RESULTS}")
    reference_name, reference = next(iter(payloads.items()))
    for name, payload in payloads.items():
        if _settings(payload) != _settings(reference):
            raise SystemExit(f"{name}'s settings differ from {reference_name}'s: "
                             f"{_settings(payload)} vs {_settings(reference)}")
    return payloads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="*", default=DEFAULT_INPUTS,
                        help="result names under benchmarks/results (without .json); missing ones are skipped")
    parser.add_argument("--name", default="zoo_vs_fuxictr_pooled")
    args = parser.parse_args()
    payloads = load(args.inputs)
    rows = [summarise(model, pairs) for model, pairs in paired_seeds(payloads).items()]
    path = write_result(args.name, {
        "benchmark": "zoo_vs_fuxictr seeds pooled", "inputs": list(payloads), "auc_tolerance": AUC_TOLERANCE,
        "settings": _settings(next(iter(payloads.values()))), "rows": rows,
        "auc_target_met": all(r["auc_target_met"] for r in rows)})
    print(markdown(rows))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
