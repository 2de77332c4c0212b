"""Tables of docs/benchmarks.md generated from the result files, so the doc cannot drift from the JSON.

A generated block sits between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->``; NAME is a renderer below,
reading ``benchmarks/results/<file>.json``. ``python -m benchmarks.docs`` rewrites every block;
``python -m benchmarks.docs --check`` lists the stale ones and exits 1 (tests/test_benchmark_docs.py runs it).
The prose around the blocks is written by hand and cites the blocks' numbers.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks.lib import doc_models, doc_serving

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
BLOCK = re.compile(r"(<!-- results:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /results:(?P=name) -->)", re.S)

RENDERERS: dict[str, Callable[[], str]] = {
    **{f.__name__: f for f in (doc_models.history_ml1m, doc_models.llm_signal_ml1m,
                               doc_models.llm_signal_ml1m_instance_texts, doc_models.ml1m_deepfm,
                               doc_models.zoo_vs_fuxictr, doc_models.wall_vs_fuxictr, doc_models.scaling,
                               doc_serving.serve_load_onehop, doc_serving.serve_chaos, doc_serving.serve_load,
                               doc_serving.serve_load_admission, doc_serving.early_exit_ml1m, doc_models.distill_ml1m,
                               doc_models.retriever_ml1m, doc_models.llactr_ml1m, doc_models.llactr_ml1m_grid,
                               doc_models.llactr_ml1m_entity, doc_models.llactr_ml1m_16ep)},
}


def render(text: str) -> tuple[str, list[str]]:
    """(the doc with every block regenerated, the names of the blocks that changed)."""
    stale = []

    def one(m: re.Match) -> str:
        name = m.group("name")
        if name not in RENDERERS:
            raise KeyError(f"docs block {name!r} has no renderer in benchmarks/docs.py")
        body = RENDERERS[name]()
        if body != m.group("body"):
            stale.append(name)
        return m.group(1) + body + m.group(4)

    return BLOCK.sub(one, text), stale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="list stale blocks, exit 1 if any")
    args = parser.parse_args()
    text = DOC.read_text()
    new, stale = render(text)
    if args.check:
        print("\n".join(stale) or "docs/benchmarks.md is up to date")
        sys.exit(1 if stale else 0)
    DOC.write_text(new)
    print(f"regenerated: {', '.join(stale) or 'nothing'}")


if __name__ == "__main__":
    main()
