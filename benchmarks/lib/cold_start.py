"""Cold-start texts on ML-1M (issue 18, item 4): the chosen semantic arm with ``:cold`` (a candidate movie unseen in
training reads the vector of its own title and genres instead of the "unknown" vector) against the same arm without
it, paired over the declared seeds, on all test rows and on the slice of rows whose candidate is unseen in training.

Runs of the semantic arm cached before that slice existed lack it, so ``compare`` leaves it out there; each cold run
also scores its own test split with its texts switched off (the same weights, OOV candidates reading "unknown"):
``texts_vs_unknown_same_weights`` pairs those, on all rows and on the slice, over the same seeds.
"""

from __future__ import annotations

from benchmarks.lib import protocol as proto
from benchmarks.lib.ml1m_runs import Runs, compare

#: the prepared splits' raw columns the cold-start texts read (the item entity's key and fields)
COLD_COLUMNS = ("movie_id", "title", "genres")
SLICE = "items_unseen_in_train"


def cold_arm(semantic_arm: str) -> str:
    return f"{semantic_arm}:cold"


def cold_summary(runs: Runs, models: list[str], semantic_arm: str, slice_rows: dict[str, int]) -> dict:
    arm = cold_arm(semantic_arm)
    out: dict = {"arm": arm, "baseline_arm": semantic_arm, "test_rows_with_oov_candidate": slice_rows.get(SLICE),
                 "rows": []}
    for model in models:
        c = compare(runs.done, runs.protocol.seeds, model, arm, semantic_arm, slice_rows)
        if c is None:
            continue
        c["verdict"] = proto.verdict(c["diff"], c["diff_se"], 0.0)
        cold = {r["seed"]: r for r in runs.done if r["model"] == model and r["arm"] == arm and "without_texts" in r}
        seeds = [s for s in c["seeds"] if s in cold]
        within = {"seeds": seeds, "cold_text_rows": cold[seeds[0]]["cold_text_rows"] if seeds else None}
        for name, pick in (("all", lambda r: r["test_auc"]), (SLICE, lambda r: r["slices"][SLICE])):
            texts = [pick(cold[s]) for s in seeds]
            unknown = [pick(cold[s]["without_texts"]) for s in seeds]
            if seeds:
                d = proto.paired_difference(texts, unknown)
                within[name] = {"texts_auc": sum(texts) / len(texts), "unknown_auc": sum(unknown) / len(unknown),
                                "diff": d.diff, "diff_se": d.se, "per_seed_diff": d.per_seed,
                                "verdict": proto.verdict(d.diff, d.se, 0.0)}
        out["rows"].append({"model": model, "vs_semantic": c, "texts_vs_unknown_same_weights": within})
    return out
