"""``llmctr`` command line: data prepare/download/synth, encode, ssft, train, distill, tune, serve, score,
pipeline, demo. One module per stage registers its commands (``register(sub)``)."""

from __future__ import annotations

import argparse
import sys

from llmctr.cli import data, llm_head, retriever, run, semantics, serve, train
from llmctr.cli.common import add_common

STAGES = [data, semantics, train, retriever, llm_head, serve, run]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmctr", description="Train and serve LLM-enhanced CTR models on Ray.")
    parser.add_argument("--version", action="version", version=f"llmctr {version()}")
    add_common(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True)
    for stage in STAGES:
        stage.register(sub)
    return parser


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("llmctr")
    except PackageNotFoundError:
        return "(not installed)"


def main(argv: list[str] | None = None) -> int:
    from llmctr.config import ConfigError
    from llmctr.runtime import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(getattr(args, "verbose", False))
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"llmctr: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
