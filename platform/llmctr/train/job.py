"""The scaffold every Ray Train job of llmctr goes through (CTR and ELEC models, the retriever, the LLM head, SSFT):
on the driver the workers' resources, the run config and the TorchTrainer, then reading the best checkpoint back;
in the workers the first lines (seed, threads, device), restoring after a restart and reporting with a checkpoint.

A job's training settings (``TrainConfig``, ``RetrieverTrainConfig``, the LLM head's and SSFT's) are read by
attribute: ``num_workers`` and ``use_gpu``, and where they have them ``cpus_per_worker``, ``threads_per_worker``,
``max_failures`` and ``placement_strategy``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray
import ray.train
import torch

from llmctr.models.artifact import cpu_state
from llmctr.runtime import TRAIN_LOG_LEVEL_ENV
from llmctr.train import local_run
from llmctr.train.checkpoint import load_checkpoint, load_optimizer, save_checkpoint

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- driver


def cpus_per_worker(settings: Any, reserved_cpus: float = 0.0) -> float:
    """Leave Ray Data at least one CPU (on 2 CPUs a worker holding both deadlocks the data feed);
    ``reserved_cpus``: held by the caller already (a Tune trial's own actor)."""
    if getattr(settings, "cpus_per_worker", None) is not None:
        return settings.cpus_per_worker
    total = ray.cluster_resources().get("CPU", 2)
    return max(0.25, min(1.0, (total - 1 - reserved_cpus) / settings.num_workers))


def threads_per_worker(settings: Any) -> int:
    """torch threads in each worker: the setting, else this machine's cores shared between the workers."""
    return getattr(settings, "threads_per_worker", None) or max(1, (os.cpu_count() or 2) // settings.num_workers)


@contextmanager
def training_data_context() -> Iterator[None]:
    """Rows reach the workers in file order (same seed → same batches → same model), and the workers'
    short shard reads do not flood the driver's log with progress bars and execution plans."""
    ctx = ray.data.DataContext.get_current()
    saved = ctx.enable_progress_bars, ctx.execution_options.preserve_order, ctx.print_on_execution_start
    ctx.enable_progress_bars, ctx.execution_options.preserve_order, ctx.print_on_execution_start = False, True, False
    try:
        yield
    finally:
        ctx.enable_progress_bars, ctx.execution_options.preserve_order, ctx.print_on_execution_start = saved


def run_config(name: str, storage_path: str, *, max_failures: int | None = None, callbacks=None):
    """The ``ray.train.RunConfig`` of every llmctr training job. ``max_failures`` (given for resumable loops):
    restart the worker group that many times from the last of the two checkpoints kept. Ray Train's console
    logs at $LLMCTR_TRAIN_LOG_LEVEL (default WARNING; ``-v``: INFO)."""
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig

    resumable = {} if max_failures is None else {
        "checkpoint_config": CheckpointConfig(num_to_keep=2),
        "failure_config": FailureConfig(max_failures=max_failures)}
    level = os.environ.get(TRAIN_LOG_LEVEL_ENV, "WARNING")
    return RunConfig(name=name, storage_path=storage_path, callbacks=callbacks,
                     logging_config=LoggingConfig(log_level=level), **resumable)


def torch_trainer(loop: Callable[[dict], None], loop_config: dict[str, Any], settings: Any, *, name: str,
                  storage_path: str, datasets: dict | None = None, split: list[str] | None = None,
                  reserved_cpus: float = 0.0, callbacks: list | None = None):
    """A TorchTrainer running ``loop`` with ``settings``' workers. ``split``: the datasets sharded between the
    workers (the others reach every worker whole; default ``["train"]``); ``loop_config["threads"]`` is set.
    The run is named ``<name>-<time>`` under ``storage_path`` and resumable when the settings have
    ``max_failures``."""
    from ray.train import DataConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    resources = {"CPU": cpus_per_worker(settings, reserved_cpus), **({"GPU": 1} if settings.use_gpu else {})}
    scaling = ScalingConfig(num_workers=settings.num_workers, use_gpu=settings.use_gpu,
                            resources_per_worker=resources,
                            placement_strategy=getattr(settings, "placement_strategy", "PACK"))
    data = {} if datasets is None else {"datasets": datasets,
                                        "dataset_config": DataConfig(datasets_to_split=split or ["train"])}
    log.debug("%s: %d worker(s), %s CPU each", name, settings.num_workers, resources["CPU"])
    return TorchTrainer(
        loop, train_loop_config={**loop_config, "threads": threads_per_worker(settings)}, scaling_config=scaling,
        run_config=run_config(f"{name}-{time.strftime('%Y%m%d-%H%M%S')}", storage_path,
                              max_failures=getattr(settings, "max_failures", None), callbacks=callbacks),
        **data)


def run_and_read(trainer, what: str, read: Callable[[Path], None] | None = None
                 ) -> tuple[dict[str, float], dict, dict[str, Any], float]:
    """Run a TorchTrainer whose loop reports with checkpoints; (final numeric metrics, best weights, loop state,
    wall seconds). ``read``: called with the final checkpoint's folder, for files of the job's own."""
    t0 = time.time()
    with training_data_context():
        result = trainer.fit()
    wall = time.time() - t0
    if result.error:
        raise RuntimeError(f"{what} failed: {result.error}") from result.error
    with result.checkpoint.as_directory() as d:
        _, best, state = load_checkpoint(Path(d))
        if read is not None:
            read(Path(d))
    metrics = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float)) and k != "final"}
    return metrics, best, state, wall


# ---------------------------------------------------------------- workers


def _quiet_report_log() -> None:
    """Ray Train 2.60 logs every ``ray.train.report`` at INFO ("Reporting training result N: TrainingReport(...)",
    one long line per epoch) on a logger named after its source file, outside the ``ray.train`` logger that
    ``RunConfig.logging_config`` sets (``run_config``); hold it to the same level."""
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:  # another Ray layout: its lines stay
        return
    logging.getLogger(context.__file__).setLevel(os.environ.get(TRAIN_LOG_LEVEL_ENV, "WARNING"))


def start_worker(seed: int, threads: int) -> tuple[int, int, torch.device]:
    """A Ray Train worker's first lines: logging, seed, threads; (rank, world size, device). In an in-process run
    (``local_run``): rank 0 of 1 on the CPU, the process's logging left as it is."""
    import ray.train.torch

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    if local_run.active() is not None:
        return 0, 1, torch.device("cpu")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _quiet_report_log()
    ctx = ray.train.get_context()
    return ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device()


def restore(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any], rank: int, *,
            weights: Callable[[torch.nn.Module], dict] = cpu_state,
            load: Callable[[dict], None] | None = None,
            read: Callable[[Path], None] | None = None) -> tuple[dict, dict[str, Any]]:
    """(best weights, loop state): from the run's latest checkpoint when Ray Train restarted the workers after a
    failure, else the model's initial ``weights`` and ``state`` as given. ``load``: puts checkpointed weights into
    the model (default ``load_state_dict``); ``read``: called with the checkpoint's folder, for the job's own
    files."""
    best = weights(model)
    ckpt = ray.train.get_checkpoint() if local_run.active() is None else None  # in process: nothing to resume
    if ckpt:
        with ckpt.as_directory() as d:
            current, best, state = load_checkpoint(Path(d))
            (load or model.load_state_dict)(current)
            load_optimizer(optimizer, Path(d))
            if read is not None:
                read(Path(d))
        state["resumes"] += 1
        log.info("rank %d resumed from the checkpoint of epoch %d", rank, state["epoch"])
    return best, state


def report(rank: int, metrics: dict, model_state: dict, best: dict, optimizer, state: dict,
           write: Callable[[Path], None] | None = None) -> None:
    """Rank 0 reports with a checkpoint (Ray only keeps metrics that come with one); others report bare.
    ``write``: adds the job's own files to the checkpoint folder."""
    local = local_run.active()
    if rank != 0:
        ray.train.report(metrics, checkpoint=None)
    else:
        with tempfile.TemporaryDirectory() as d:
            save_checkpoint(Path(d), model_state, best, optimizer, state)
            if write is not None:
                write(Path(d))
            if local is not None:
                local.report(metrics, Path(d))
            else:
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
    hold_while_asked(metrics.get("epoch"))


#: fault injection for tests: a file holding an epoch number N; while it exists, every worker waits after reporting
#: epoch N or later
HOLD_ENV = "LLMCTR_TRAIN_HOLD_FILE"


def hold_while_asked(epoch: int | None, max_wait_s: float = 600.0) -> None:
    """Wait while ``$LLMCTR_TRAIN_HOLD_FILE`` exists and this report's ``epoch`` is at least the number in it (never
    longer than ``max_wait_s``): a test can kill a node at a known point of a run, its checkpoint written and
    epochs still to come."""
    path = os.environ.get(HOLD_ENV)
    if not path or epoch is None:
        return
    deadline = time.monotonic() + max_wait_s
    while time.monotonic() < deadline:
        try:
            at = int(Path(path).read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return
        if epoch < at:
            return
        time.sleep(0.05)
