"""Peak memory of a process and everything it starts (a local Ray's GCS, raylet and workers are the driver's
descendants), sampled from outside while it runs."""

from __future__ import annotations

import threading

import psutil

MB = 1024 * 1024


class TreeMemory:
    """Samples, every ``interval`` seconds until stopped: the root process's resident set (the driver's own
    memory) and the proportional set size summed over the root and all its descendants (shared pages, such as
    Ray's object store, counted once across the processes that map them)."""

    def __init__(self, pid: int, interval: float = 0.5):
        self.root, self.interval = psutil.Process(pid), interval
        self.driver_peak = self.tree_peak = 0
        self.processes_peak, self.samples = 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        try:
            self.driver_peak = max(self.driver_peak, self.root.memory_info().rss)
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        total = 0
        for proc in procs:
            try:
                total += proc.memory_full_info().pss
            except psutil.Error:  # exited meanwhile, or not ours to read
                continue
        self.tree_peak = max(self.tree_peak, total)
        self.processes_peak = max(self.processes_peak, len(procs))
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        return {"driver_peak_rss_mb": round(self.driver_peak / MB, 1),
                "tree_peak_pss_mb": round(self.tree_peak / MB, 1),
                "processes_peak": self.processes_peak, "memory_samples": self.samples}
