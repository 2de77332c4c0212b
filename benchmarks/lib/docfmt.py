"""Formatting shared by the renderers of docs/benchmarks.md's generated blocks (``benchmarks.docs``)."""

from __future__ import annotations

import json

from benchmarks.lib.common import RESULTS

SLICES = [("users_lt10_train_rows", "users < 10 train rows"), ("users_unseen_in_train", "users unseen in train"),
          ("items_lt10_train_rows", "items < 10 train rows")]


def load(name: str) -> dict:
    """``benchmarks/results/<name>.json`` (every renderer reads through this; tests patch it)."""
    return json.loads((RESULTS / f"{name}.json").read_text())


def exists(name: str) -> bool:
    return (RESULTS / f"{name}.json").is_file()


def diff(d: float, se: float) -> str:
    """A paired difference and its standard error at 4 decimals; an SE that would round to 0 reads "< 0.0001"."""
    return (f"{d:+.4f} ± " + (f"{se:.4f}" if se >= 0.00005 else "< 0.0001")).replace("-", "−")


def signed(x: float, digits: int = 5) -> str:
    return f"{x:+.{digits}f}".replace("-", "−")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def provenance(r: dict) -> str:
    prov = r["provenance"]
    return (f"commit `{prov['git_commit'][:7]}`{' with uncommitted changes' if prov['dirty'] else ''}, "
            f"{prov['date']}, " + (f"FuxiCTR {prov['packages']['fuxictr']}, " if prov['packages'].get('fuxictr')
                                    else "") + f"{prov['machine']['cpus']} CPUs")


def protocol_footer(r: dict, scope: str, lead: str = "") -> str:
    """The line under a protocol result's table: its seeds (``scope``: whose), epoch budget and provenance."""
    p = r["protocol"]
    return (f"\n{lead}Seeds {', '.join(map(str, p['seeds']))} {scope}; at most {p['max_epochs']} epochs, patience "
            f"{p['patience']}, best epoch on validation AUC; {provenance(r)}.\n")


def protocol_result(name: str) -> tuple[dict | None, str | None]:
    """(the result, None), or (None, a line standing in for its table) while the file is missing (every committed
    result carries its provenance: tests/test_benchmark_docs.py)."""
    if exists(name):
        return load(name), None
    return None, (f"_No protocol result yet: `benchmarks/results/{name}.json` is missing; run "
                  f"`python -m benchmarks.{name}`, then `python -m benchmarks.docs`._\n")


def origin(r: dict) -> str:
    """The line under a table: the result's provenance."""
    return f"\nMeasured at {provenance(r)}.\n"
