"""Options every command shares."""

from __future__ import annotations

import argparse


def add_common(p: argparse.ArgumentParser, force: str | None = None, top: bool = False) -> None:
    """``--artifacts``, ``--address``, ``-v``; and ``--force`` with that help where the command can redo work.

    The top-level parser (``top``) takes them too, so they go before or after the subcommand: a subcommand's copy
    has no default of its own (argparse.SUPPRESS) and so never overwrites what was given before it."""
    if force:
        p.add_argument("--force", action="store_true", help=force)
    default = {} if top else {"default": argparse.SUPPRESS}
    p.add_argument("--artifacts", help="artifacts root (default $LLMCTR_ARTIFACTS or ./artifacts)", **default)
    p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)", **default)
    p.add_argument("-v", "--verbose", action="store_true", help="Ray's own progress and INFO lines too", **default)


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
