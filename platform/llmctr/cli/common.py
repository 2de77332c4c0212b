"""Options every command shares."""

from __future__ import annotations

import argparse


def add_common(p: argparse.ArgumentParser, force: str | None = None) -> None:
    """``--artifacts``, ``--address``, ``-v``; and ``--force`` with that help where the command can redo work."""
    if force:
        p.add_argument("--force", action="store_true", help=force)
    p.add_argument("--artifacts", help="artifacts root (default $LLMCTR_ARTIFACTS or ./artifacts)")
    p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    p.add_argument("-v", "--verbose", action="store_true")


def add_training(p: argparse.ArgumentParser, batch_size: bool = True, precision: bool = True) -> None:
    """What every Ray Train command takes besides its config: the prepared data, scale and budget."""
    p.add_argument("--data", help="prepared dataset folder (default ARTIFACTS/data/DATASET)")
    p.add_argument("--num-workers", type=int)
    p.add_argument("--epochs", type=int)
    if batch_size:
        p.add_argument("--batch-size", type=int)
    p.add_argument("--use-gpu", action="store_true")
    if precision:
        p.add_argument("--precision", choices=("fp32", "bf16", "auto"),
                       help="training forward precision (bf16: autocast; auto: bf16 where the hardware has it)")


def apply_training(train, args: argparse.Namespace) -> None:
    """Copy the scale and budget options given on the command line onto a config's ``train`` section."""
    for key in ("num_workers", "epochs", "batch_size", "precision"):
        if getattr(args, key, None) is not None:
            setattr(train, key, getattr(args, key))
    if getattr(args, "use_gpu", False):
        train.use_gpu = True
