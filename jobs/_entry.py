"""Shared by the job entrypoints: ``--config FILE`` plus the CLI's own options, forwarded to ``llmctr``.

Submit from the repository root, e.g.
    ray job submit --working-dir . -- python jobs/train.py --config configs/experiments/ml1m_deepfm.yaml
On nodes without the package installed, add
    --runtime-env-json '{"py_modules": ["platform/llmctr"]}'
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PLATFORM = Path(__file__).resolve().parents[1] / "platform"
if PLATFORM.is_dir() and str(PLATFORM) not in sys.path:
    sys.path.insert(0, str(PLATFORM))


def run(*command: str, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=Path(sys.argv[0]).name, add_help=False)
    parser.add_argument("--config", required=True,
                        help="dataset YAML (prepare), search YAML (tune) or experiment YAML (others)")
    argv = sys.argv[1:] if argv is None else argv
    from llmctr.cli import main

    if {"-h", "--help"} & set(argv) and "--config" not in argv:
        words = [w for w in command if not w.startswith("-")][:2]  # the command, without its preset options
        return main([*words, "--help"])
    known, rest = parser.parse_known_args(argv)
    return main([*command, known.config, *rest])
