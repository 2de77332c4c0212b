"""Ray Tune over any experiment setting: each trial is a Ray Train run of the experiment with some settings
changed (dotted paths such as ``model.llactr.lambda_kl`` or ``distill.beta``), its per-epoch validation metrics
streamed to Tune (``TuneReportCallback``) so ASHA can stop poor trials after ``grace_period`` epochs.

Output, in ``<artifacts>/tune/<search name>/<version>/``: ``results.json`` (one row per trial: its settings,
best validation metric, test metrics when it ran to the end, epochs run), ``search.png`` (validation metric
per epoch, one line per trial, plus the metric against each searched setting) and ``best_experiment.yaml``
(the base experiment with the best trial's settings, ready for ``llmctr train``).
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field
from pydantic.dataclasses import dataclass as config_dataclass

from llmctr import storage
from llmctr.config import STRICT, ConfigError, dump_config, load_named_config, parse_config
from llmctr.data import resolve_prepared
from llmctr.storage import artifacts_root
from llmctr.train.ctr.config import ExperimentConfig, load_experiment

log = logging.getLogger(__name__)


@config_dataclass(config=STRICT)
class ParamSpec:
    """One searched setting: ``uniform`` / ``loguniform`` [low, high], ``choice`` [values...] (sampled) or
    ``grid`` [values...] (every value, times ``num_samples``)."""

    kind: Literal["uniform", "loguniform", "choice", "grid"]
    values: list[Any] = Field(min_length=1)

    def __post_init__(self) -> None:
        if self.kind in ("uniform", "loguniform") and (len(self.values) != 2 or self.values[0] >= self.values[1]):
            raise ValueError(f"{self.kind} needs [low, high] with low < high, got {self.values}")
        if self.kind == "loguniform" and self.values[0] <= 0:
            raise ValueError("loguniform needs a positive lower bound")

    def domain(self):
        from ray import tune

        if self.kind == "uniform":
            return tune.uniform(*self.values)
        if self.kind == "loguniform":
            return tune.loguniform(*self.values)
        return tune.choice(self.values) if self.kind == "choice" else tune.grid_search(self.values)


@config_dataclass(config=STRICT)
class SearchConfig:
    """A search YAML (``configs/searches/*.yaml``)."""

    name: str
    experiment: str  # the base experiment: a name under configs/experiments or a YAML path
    space: dict[str, ParamSpec]
    overrides: dict[str, Any] = Field(default_factory=dict)  # fixed settings for every trial (e.g. train.epochs)
    metric: str = "valid_auc"
    mode: Literal["max", "min"] = "max"
    num_samples: int = Field(8, ge=1)
    max_concurrent_trials: int = Field(1, ge=1)
    scheduler: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(1, ge=1)  # epochs before ASHA may stop a trial
    reduction_factor: int = Field(2, ge=2)
    seed: int = 2026
    trial_cpus: float = Field(0.25, gt=0)  # the trial's driver (the Ray Train workers ask for their own)


def load_search(path_or_name: str | Path) -> SearchConfig:
    return load_named_config(SearchConfig, path_or_name, "search", "searches")


def with_settings(exp: ExperimentConfig, settings: dict[str, Any]) -> ExperimentConfig:
    """A copy of ``exp`` with dotted-path settings applied, validated like a YAML file."""
    data = copy.deepcopy(dump_config(exp))
    for dotted, value in settings.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            if not isinstance(node.get(key), dict):
                if node.get(key) is None and key in node:
                    node[key] = {}
                else:
                    raise ConfigError(f"setting {dotted!r}: {key!r} is not a section of experiment {exp.name!r}")
            node = node[key]
        node[leaf] = value
    return parse_config(ExperimentConfig, data, f"experiment {exp.name} with {settings}")


@dataclass
class SearchResult:
    folder: storage.Location
    rows: list[dict[str, Any]]
    best: dict[str, Any]
    best_experiment: ExperimentConfig


def _trial(params: dict[str, Any], base: dict[str, Any], data_dir: str, artifacts: str, trial_cpus: float) -> None:
    """One Tune trial: a Ray Train fit of the experiment with this trial's settings."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from llmctr.train.ctr.fit import fit

    exp = with_settings(parse_config(ExperimentConfig, base, "base experiment"), params)
    exp.name = f"{exp.name}-trial-{tune.get_context().get_trial_id()}"
    fit(exp, data_dir, artifacts=artifacts, callbacks=[TuneReportCallback()], reserved_cpus=trial_cpus)


def run_search(search: SearchConfig, data_dir: storage.Location, artifacts: storage.Location | None = None
               ) -> SearchResult:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    base = with_settings(load_experiment(search.experiment), search.overrides)
    for dotted in search.space:  # fail fast on a path the experiment does not have
        with_settings(base, {dotted: search.space[dotted].values[0]})
    root = artifacts_root(artifacts)
    _warn_without_state_api()
    if base.semantics is not None:  # built (or found up to date) once here, not by concurrent trials
        from llmctr.train.ctr.semantic_tables import prepare_semantics

        prepare_semantics(copy.deepcopy(base), resolve_prepared(data_dir), root)
    # A trial reports once per epoch and once more with its test metrics: max_t lies past that final report, so
    # ASHA never stops a trial that is about to finish (and write its artifact).
    scheduler = (ASHAScheduler(time_attr="training_iteration", grace_period=search.grace_period,
                               reduction_factor=search.reduction_factor, max_t=base.train.epochs + 2)
                 if search.scheduler == "asha" else FIFOScheduler())
    trainable = tune.with_resources(
        tune.with_parameters(_trial, base=dump_config(base), data_dir=str(data_dir), artifacts=str(root),
                            trial_cpus=search.trial_cpus),
        {"cpu": search.trial_cpus})
    tuner = tune.Tuner(
        trainable,
        param_space={k: v.domain() for k, v in search.space.items()},
        tune_config=tune.TuneConfig(metric=search.metric, mode=search.mode, num_samples=search.num_samples,
                                    max_concurrent_trials=search.max_concurrent_trials, scheduler=scheduler,
                                    search_alg=_seeded_search(search.seed, search.max_concurrent_trials),
                                    reuse_actors=False),
        run_config=tune.RunConfig(name=search.name, storage_path=str(storage.join(root, "ray_results")),
                                  verbose=1),
    )
    grid = tuner.fit()
    rows = [_row(result, search) for result in grid]
    rows = [r for r in rows if r is not None]
    if not rows:
        errors = [str(r.error) for r in grid if r.error]
        raise RuntimeError(f"no trial of search {search.name!r} reported {search.metric!r}: {errors[:3]}")
    best = (max if search.mode == "max" else min)(rows, key=lambda r: r[f"best_{search.metric}"])
    best_exp = with_settings(base, best["settings"])
    best_exp.name = f"{base.name}-tuned"
    folder = _write_outputs(search, rows, best, best_exp, root)
    log.info("search %s: best %s %.4f with %s; outputs in %s", search.name, search.metric,
             best[f"best_{search.metric}"], best["settings"], folder)
    return SearchResult(folder, rows, best, best_exp)


def _warn_without_state_api() -> None:
    """Ray Train frees the placement group of a trial Tune stopped only through the State API (the dashboard)."""
    import ray
    from ray.util.state import list_nodes

    try:
        list_nodes(address=ray.get_runtime_context().gcs_address, limit=1, timeout=5,
                   raise_on_missing_output=False)
    except Exception:  # noqa: BLE001 (any failure means the API is not there)
        log.warning("Ray's State API (the dashboard) is not reachable: the CPUs of trials that ASHA stops stay "
                    "reserved, and later trials may wait for them. Start Ray with the dashboard "
                    "(llmctr tune does; `ray start` does by default).")


def _seeded_search(seed: int, max_concurrent: int):
    """Random/grid sampling with a fixed seed. Tune does not pass ``max_concurrent_trials`` on to a search
    algorithm it did not build, and on 2 CPUs a second concurrent trial starves Ray Data (deadlock)."""
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(random_state=seed, max_concurrent=max_concurrent)


def _row(result, search: SearchConfig) -> dict[str, Any] | None:
    history = result.metrics_dataframe
    if history is None or search.metric not in history or "epoch" not in history:
        return None
    curve = [float(v) for v in history.loc[history["epoch"].notna(), search.metric]]  # the final report has none
    values = history[search.metric].dropna()
    best = float(values.max() if search.mode == "max" else values.min())
    final = result.metrics or {}
    settings = {k: result.config[k] for k in search.space}
    return {"trial": result.path.rsplit("/", 1)[-1], "settings": settings, f"best_{search.metric}": best,
            "curve": curve, "epochs_run": len(curve), "completed": bool(final.get("final")),
            **{k: float(v) for k, v in final.items()
               if final.get("final") and k.startswith("test_") and isinstance(v, (int, float))}}


def _write_outputs(search: SearchConfig, rows: list[dict[str, Any]], best: dict[str, Any],
                   best_exp: ExperimentConfig, root: storage.Location) -> storage.Location:
    from llmctr.tune.plot import plot_search

    parent = storage.join(root, "tune", search.name)
    with storage.publish_version(parent) as (out, version):
        (out / "results.json").write_text(json.dumps(
            {"search": dump_config(search), "best": best, "trials": rows}, indent=1, default=float))
        (out / "best_experiment.yaml").write_text(yaml.safe_dump(dump_config(best_exp), sort_keys=False))
        plot_search(rows, search.metric, list(search.space), out / "search.png", title=search.name)
    return storage.join(parent, version)
