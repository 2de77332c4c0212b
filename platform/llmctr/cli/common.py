"""Options every command shares."""

from __future__ import annotations

import argparse


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--artifacts", help="artifacts root (default $LLMCTR_ARTIFACTS or ./artifacts)")
    p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    p.add_argument("-v", "--verbose", action="store_true")


def add_training(p: argparse.ArgumentParser, batch_size: bool = True) -> None:
    """What every Ray Train command takes besides its config: the prepared data, scale and budget."""
    p.add_argument("--data", help="prepared dataset folder (default ARTIFACTS/data/DATASET)")
    p.add_argument("--num-workers", type=int)
    p.add_argument("--epochs", type=int)
    if batch_size:
        p.add_argument("--batch-size", type=int)
    p.add_argument("--use-gpu", action="store_true")
