"""The zoo-vs-FuxiCTR report (used by ``benchmarks.zoo_vs_fuxictr``): one row per model under the benchmark
protocol (benchmarks/lib/protocol.py): means over the declared seeds, the paired per-seed test-AUC difference with
its standard error, and its verdict against the bar "ours >= FuxiCTR - 0.001". docs/benchmarks.md renders the rows
(``benchmarks.docs.zoo_vs_fuxictr``)."""

from __future__ import annotations

import numpy as np

from benchmarks.lib import protocol as proto

#: the AUC bar, as a bar on the paired difference ours - FuxiCTR
AUC_BAR = -0.001
SPEEDUP_TARGET = 1.5


# Where the two implementations are not the same computation (everything else: same layers, same shapes).
ARCH_NOTES = {
    "deepfm": "same: LR + FM + MLP[256,128].",
    "fm": "same: LR (per-feature weight + bias) + FM.",
    "fwfm": "FuxiCTR linear_type='LW' (= our per-feature weight); its pair weights are a Linear with a bias and "
            "xavier init, ours start at 1 (plain FM) without a bias (the model's global bias plays that role).",
    "fmfm": "same: a 16x16 matrix per field pair (xavier init) + LR.",
    "dcnv2": "same: parallel CrossNetV2 (3 layers) + DNN[400,400,400], Linear over the concatenation.",
    "autoint": "same maths (3 interacting layers, 2 heads, d=32, residual, unscaled, DNN[400,400]); ours fuses "
               "W_q/W_k/W_v into one Linear and batches the heads into one bmm; FuxiCTR sums two output Linears, "
               "ours has one over the concatenation (equivalent).",
    "finalmlp": "same: feature gates (800), MLP1 [400,400,400], MLP2 [800], 2-head bilinear fusion.",
    "wukong": "same: 3 WuKong layers (FMB [200,200]→40, LCB 40, k=8, dropout 0.2), MLP [32,32].",
}
COMMON_NOTES = [
    "Embeddings: FuxiCTR keeps one nn.Embedding per field (7 lookups + stack per batch); ours one shared table "
    "with per-field offsets (one gather). Both init N(0, 1e-4).",
    "Dense-layer init: both xavier_normal with zero bias for every nn.Linear (FuxiCTR's BaseModel.reset_parameters; "
    "ours model.dense_init, set to xavier_normal for every model of this comparison).",
    "FuxiCTR's train step clips the gradient norm to 10 (BaseModel.fit's default, kept); ours does not clip.",
    "FuxiCTR's reduce_lr_on_plateau (x0.1 after a non-improving epoch) is switched OFF so both sides keep Adam at "
    "lr 1e-3; both sides have the protocol's epoch budget and early-stopping patience and keep the best epoch on "
    "validation AUC.",
    "Loss: FuxiCTR applies a sigmoid then binary_cross_entropy; ours binary_cross_entropy_with_logits.",
    "FinalMLP: FuxiCTR's model_zoo InteractionAggregation (kept as upstream wrote it) multiplies [B, H, 1, dx] by its "
    "weight viewed as [H, dx, dy], so matmul broadcasting copies the weight once per sample before bmm; that, not the "
    "feed, is why its FinalMLP trains at about 1.9k samples/s here (benchmarks/fuxictr/step_profile.py, a probe). "
    "Ours computes the same bilinear term without the copy.",
]


def _mean(runs: list[dict], key: str) -> float:
    return float(np.mean([r[key] for r in runs]))


def make_row(model: str, ours: list[dict], fx: list[dict], mem: list[dict] | None = None,
             label: str | None = None) -> dict:
    """One model's row: ``ours`` / ``fx`` (/ ``mem``: FuxiCTR on its in-memory feed) hold one run per declared seed,
    in the same seed order on every side."""
    seeds = [r["seed"] for r in ours]
    if [r["seed"] for r in fx] != seeds:
        raise ValueError(f"{model}: ours ran seeds {seeds}, FuxiCTR {[r['seed'] for r in fx]}")
    d = proto.paired_difference([r["test_auc"] for r in ours], [r["test_auc"] for r in fx])
    row = {
        "model": label or model, "seeds": seeds,
        "ours_auc": _mean(ours, "test_auc"), "fuxictr_auc": _mean(fx, "test_auc"),
        "diff": d.diff, "diff_se": d.se, "verdict": proto.verdict(d.diff, d.se, bar=AUC_BAR),
        "ours_samples_per_s": _mean(ours, "train_samples_per_s"),
        "fuxictr_samples_per_s": _mean(fx, "train_samples_per_s"),
    }
    row["speedup"] = row["ours_samples_per_s"] / row["fuxictr_samples_per_s"]
    for side, runs in (("ours", ours), ("fuxictr", fx)):
        row.update({f"{side}_logloss": _mean(runs, "test_logloss"),
                    f"{side}_auc_per_seed": [r["test_auc"] for r in runs],
                    f"{side}_valid_auc_per_seed": [r["valid_auc"] for r in runs],
                    f"{side}_samples_per_s_per_seed": [r["train_samples_per_s"] for r in runs],
                    f"{side}_epochs_run": [r["epochs_run"] for r in runs],
                    f"{side}_best_epoch": [r["best_epoch"] for r in runs],
                    f"{side}_wall_seconds": _mean(runs, "wall_seconds"),
                    f"{side}_machine_busy": [r.get("cpu") for r in runs]})
    row["diff_per_seed"] = d.per_seed
    row["architecture_note"] = ARCH_NOTES[model]
    if mem:
        row.update({"fuxictr_memfeed_auc": _mean(mem, "test_auc"),
                    "fuxictr_memfeed_auc_per_seed": [r["test_auc"] for r in mem],
                    "fuxictr_memfeed_samples_per_s": _mean(mem, "train_samples_per_s"),
                    "speedup_vs_memfeed": row["ours_samples_per_s"] / _mean(mem, "train_samples_per_s")})
    return row


def summary(rows: list[dict]) -> dict:
    """How many models met / missed / were inconclusive on the AUC bar, and the throughput target."""
    verdicts = {v: [r["model"] for r in rows if r["verdict"] == v] for v in ("met", "missed", "inconclusive")}
    return {"auc_bar": f"ours - fuxictr >= {AUC_BAR} (paired over seeds; met when diff - 2 SE > bar)",
            "auc_verdicts": verdicts, "speedup_target": SPEEDUP_TARGET,
            "throughput_missed": {r["model"]: round(r["speedup"], 3) for r in rows if r["speedup"] < SPEEDUP_TARGET}}


#: what two result files must share to be one comparison (their rows measured by the same code, settings and protocol)
SAME = ("dataset", "auc_bar", "settings", "measurement", "rows_per_split", "fields", "protocol")
SAME_PROVENANCE = ("git_commit", "dirty", "packages", "fuxictr_venv")
#: the machine's facts that must agree (its kernel build may differ between two sessions' virtual machines)
SAME_MACHINE = ("cpus", "processor", "python")


def merge(results: list[dict], order: list[str]) -> tuple[dict, dict]:
    """(payload, provenance) of one comparison made of several runs of ``benchmarks.zoo_vs_fuxictr`` over different
    models, e.g. a model added later at the same commit. Refuses results that differ in anything but their models
    (commit, settings, protocol, package versions, machine) or that both hold a model; rows follow ``order``."""
    first = results[0]
    for r in results[1:]:
        for key in SAME:
            if r.get(key) != first.get(key):
                raise ValueError(f"cannot merge: '{key}' differs")
        for key in SAME_PROVENANCE:
            if r["provenance"].get(key) != first["provenance"].get(key):
                raise ValueError(f"cannot merge: provenance '{key}' differs")
        for key in SAME_MACHINE:
            if r["provenance"]["machine"].get(key) != first["provenance"]["machine"].get(key):
                raise ValueError(f"cannot merge: machine '{key}' differs")
    if first["provenance"]["dirty"]:
        raise ValueError("cannot merge results measured on a dirty tree")
    rows = [row for r in results for row in r["rows"]]
    models = [row["model"] for row in rows]
    if len(set(models)) != len(models):
        raise ValueError(f"cannot merge: a model appears twice ({sorted(models)})")
    rows.sort(key=lambda row: (order.index(row["model"].split(" ")[0]), row["model"]))
    payload = {k: v for k, v in first.items() if k != "provenance"}
    payload.update(rows=rows, summary=summary(rows), runs=[run for r in results for run in r["runs"]],
                   elapsed_seconds=sum(r["elapsed_seconds"] for r in results),
                   estimated_upper_seconds=sum(r["estimated_upper_seconds"] for r in results))
    parts = [r["provenance"] for r in results]
    prov = {**first["provenance"], "command": " ; ".join(p["command"] for p in parts),
            "argv": [p["argv"] for p in parts], "date": max(p["date"] for p in parts),
            "parts": [{**{k: p[k] for k in ("command", "argv", "date")}, "system": p["machine"].get("system")}
                      for p in parts]}
    return payload, prov
