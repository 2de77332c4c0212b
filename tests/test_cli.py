import subprocess
import sys
from pathlib import Path

import pytest

from llmctr.cli import main

COMMANDS = [[], ["data"], ["data", "prepare"], ["data", "download"], ["data", "synth"], ["train"], ["serve"],
            ["score"], ["demo"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*cmd, "--help"])
    assert exc.value.code == 0
    assert "usage: llmctr" in capsys.readouterr().out


def test_console_script_installed():
    exe = Path(sys.executable).parent / "llmctr"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True)
    assert "prepare → train → serve" in out.stdout


def test_clear_error_for_unknown_experiment(capsys):
    assert main(["train", "no_such_experiment"]) == 2
    assert "unknown experiment" in capsys.readouterr().err


def test_data_prepare_cli_on_missing_data(tmp_path, capsys):
    assert main(["data", "prepare", "ml1m", "--data-dir", str(tmp_path)]) == 2
    assert "ratings.dat" in capsys.readouterr().err
