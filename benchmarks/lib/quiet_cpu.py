"""Measuring on a shared machine: wait until the CPUs are quiet, watch what other processes use during a run,
and repeat a disturbed run (used by ``benchmarks.zoo_vs_fuxictr`` and ``benchmarks.wall_vs_fuxictr``)."""

from __future__ import annotations

import logging
import os
import threading
import time

log = logging.getLogger("bench")


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as fh:
        vals = [int(x) for x in fh.readline().split()[1:]]
    return sum(vals), vals[3] + vals[4]  # total, idle + iowait


def busy_fraction(seconds: float = 1.0) -> float:
    t0, i0 = _cpu_times()
    time.sleep(seconds)
    t1, i1 = _cpu_times()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def wait_quiet(threshold: float = 0.15, max_wait: float = 180.0) -> dict:
    """Wait (up to ``max_wait`` s) until the CPUs are < ``threshold`` busy over 2 s; report what was seen, so a
    run measured under someone else's load is visible in the results."""
    t0 = time.time()
    busy = busy_fraction(2.0)
    while busy > threshold and time.time() - t0 < max_wait:
        busy = busy_fraction(2.0)
    return {"busy_before": round(busy, 3), "waited_s": round(time.time() - t0, 1)}


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid → (ppid, utime + stime in clock ticks) for every live process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                rest = fh.read().rsplit(")", 1)[1].split()
            table[int(entry)] = (int(rest[1]), int(rest[11]) + int(rest[12]))
        except (OSError, IndexError, ValueError):
            continue
    return table


class CpuWatch:
    """CPU use during a run: machine-wide busy fraction, and the CPU time of processes OUTSIDE this benchmark's
    process tree (someone else's work on the same cores), sampled every ``interval`` seconds."""

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.me = os.getpid()
        self.tick = os.sysconf("SC_CLK_TCK")

    def _foreign(self, table: dict[int, tuple[int, int]]) -> dict[int, int]:
        own, frontier = {self.me}, [self.me]
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        while frontier:
            for child in children.get(frontier.pop(), []):
                if child not in own:
                    own.add(child)
                    frontier.append(child)
        return {pid: ticks for pid, (_, ticks) in table.items() if pid not in own}

    def _sample(self) -> None:
        prev = self._foreign(_proc_table())
        while not self._stop.wait(self.interval):
            cur = self._foreign(_proc_table())
            # processes that appeared during the run count from zero
            self._ticks += sum(max(0, t - prev.get(pid, 0)) for pid, t in cur.items())
            prev = cur

    def __enter__(self):
        self._ticks, self._stop = 0, threading.Event()
        self.t0, self.i0 = _cpu_times()
        self.wall0 = time.time()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        t1, i1 = _cpu_times()
        self.busy = 1.0 - (i1 - self.i0) / max(1, t1 - self.t0)
        self.seconds = time.time() - self.wall0
        self.foreign_cores = self._ticks / self.tick / max(self.seconds, 1e-9)

    def summary(self, quiet: dict) -> dict:
        return {**quiet, "busy_during": round(self.busy, 3), "foreign_cores": round(self.foreign_cores, 3)}


def measured(label: str, run, args) -> dict:
    """Run ``run()`` after the CPUs are quiet; repeat (up to ``args.max_attempts``) while other processes used
    more than ``args.max_foreign`` cores on average during it; keep the attempt with the least foreign load."""
    best = None
    for attempt in range(1, args.max_attempts + 1):
        quiet = wait_quiet(args.quiet_threshold, args.max_quiet_wait)
        log.info("%s: attempt %d (%s)", label, attempt, quiet)
        with CpuWatch() as cpu:
            out = run()
        out["cpu"] = {**cpu.summary(quiet), "attempt": attempt}
        log.info("%s: %.0f samples/s, other processes used %.2f cores", label, out["train_samples_per_s"],
                 cpu.foreign_cores)
        if best is None or cpu.foreign_cores < best["cpu"]["foreign_cores"]:
            best = out
        if cpu.foreign_cores <= args.max_foreign:
            break
    best["cpu"]["attempts"] = attempt
    return best

