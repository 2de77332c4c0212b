"""The in-process engine of ``llmctr train``: a CTR training loop written for Ray Train run as one worker in this
process, without Ray (no cluster start, no worker group, no checkpoint upload), for data that fits in memory.

``LocalTrainer`` stands where ``job.torch_trainer``'s TorchTrainer stands: ``fit()`` runs the same
``train_loop_per_worker``, and ``job.start_worker`` / ``restore`` / ``report`` send what they would send to Ray
Train to the active ``LocalRun`` instead (rank 0 of 1, CPU, no checkpoint to resume from). The loop's epochs,
batches, metrics and best weights are the same as on one Ray Train worker (tests/test_train.py); what the engine
gives up is Ray Train's restart of a failed worker and scaling beyond one process.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_ACTIVE: LocalRun | None = None


def active() -> LocalRun | None:
    """The in-process run this worker code belongs to, or None inside a Ray Train worker."""
    return _ACTIVE


class LocalCheckpoint:
    def __init__(self, folder: Path):
        self.folder = folder

    @contextmanager
    def as_directory(self) -> Iterator[str]:
        yield str(self.folder)


class LocalRun:
    """What one in-process run has reported: the last metrics and a copy of the last checkpoint folder."""

    def __init__(self, root: Path):
        self.root, self.metrics, self.checkpoint = root, {}, None

    def report(self, metrics: dict[str, Any], folder: Path | None) -> None:
        self.metrics = dict(metrics)
        if folder is not None:
            kept = self.root / "checkpoint"
            shutil.rmtree(kept, ignore_errors=True)
            shutil.copytree(folder, kept)
            self.checkpoint = LocalCheckpoint(kept)


class LocalResult:
    def __init__(self, run: LocalRun, error: BaseException | None):
        self.metrics, self.checkpoint, self.error = run.metrics, run.checkpoint, error


class LocalTrainer:
    """``loop(loop_config)`` in this process; ``fit()`` returns what ``job.run_and_read`` reads from a Ray Train
    result (metrics, the last checkpoint, the error if the loop raised)."""

    def __init__(self, loop: Callable[[dict], None], loop_config: dict[str, Any], threads: int):
        self.loop, self.config = loop, {**loop_config, "threads": threads}
        self._tmp = tempfile.TemporaryDirectory(prefix="llmctr-local-run-")

    def fit(self) -> LocalResult:
        global _ACTIVE
        run, error = LocalRun(Path(self._tmp.name)), None
        _ACTIVE = run
        try:
            self.loop(self.config)
        except Exception as exc:  # as a Ray Train result carries it: run_and_read raises with the job's name
            error = exc
        finally:
            _ACTIVE = None
        return LocalResult(run, error)
