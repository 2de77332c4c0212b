"""Options every command shares."""

from __future__ import annotations

import argparse


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--artifacts", help="artifacts root (default $LLMCTR_ARTIFACTS or ./artifacts)")
    p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    p.add_argument("-v", "--verbose", action="store_true")
