import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from llmctr.cli import build_parser, main
from llmctr.config import configs_dir
from llmctr.data import load_dataset_config, prepared_dir
from llmctr.train import load_experiment

COMMANDS = [[], ["data"], ["data", "prepare"], ["data", "download"], ["data", "synth"], ["encode"], ["ssft"],
            ["train"], ["distill"], ["tune"], ["retriever"], ["retriever", "train"], ["retriever", "query"],
            ["llm-head"], ["llm-head", "train"], ["serve"], ["score"], ["pipeline"], ["demo"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*cmd, "--help"])
    assert exc.value.code == 0
    assert "usage: llmctr" in capsys.readouterr().out


def test_console_script_installed():
    exe = Path(sys.executable).parent / "llmctr"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True)
    assert "Train and serve LLM-enhanced CTR models on Ray." in out.stdout
    for command in ("data", "encode", "train", "distill", "tune", "retriever", "llm-head", "serve", "pipeline", "demo"):
        assert f"    {command} " in out.stdout, command


def test_clear_error_for_unknown_experiment(capsys):
    assert main(["train", "no_such_experiment"]) == 2
    assert "unknown experiment" in capsys.readouterr().err


def test_distill_and_tune_name_what_is_wrong(capsys):
    assert main(["distill", "synthetic_deepfm"]) == 2
    assert "no 'distill' section" in capsys.readouterr().err
    assert main(["tune", "no_such_search"]) == 2
    assert "unknown search" in capsys.readouterr().err


def test_data_prepare_cli_on_missing_data(tmp_path, capsys):
    assert main(["data", "prepare", "ml1m", "--data-dir", str(tmp_path)]) == 2
    assert "ratings.dat" in capsys.readouterr().err


JOBS = sorted(p.name for p in (Path(__file__).resolve().parents[1] / "jobs").glob("[!_]*.py"))


@pytest.mark.parametrize("job", JOBS)
def test_every_job_entrypoint_forwards_to_its_command(job):
    """`ray job submit ... -- python jobs/X.py --help` shows the matching llmctr command's options."""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, f"jobs/{job}", "--help"], capture_output=True, text=True, cwd=root)
    assert out.returncode == 0, out.stderr
    command = {"prepare": "data prepare", "deploy": "serve", "retriever": "retriever train",
               "llm_head": "llm-head train"}.get(job[:-3], job[:-3])
    assert f"usage: llmctr {command}" in out.stdout


@pytest.mark.parametrize("argv", [["--artifacts", "A", "-v", "train", "exp"],
                                  ["train", "exp", "--artifacts", "A", "-v"],
                                  ["--artifacts", "B", "train", "exp", "--artifacts", "A", "-v"]])
def test_global_options_before_or_after_the_subcommand(argv):
    args = build_parser().parse_args(argv)
    assert (args.artifacts, args.verbose, args.experiment) == ("A", True, "exp")


def test_global_options_default_when_not_given():
    args = build_parser().parse_args(["data", "synth"])
    assert (args.artifacts, args.address, args.verbose) == (None, None, False)


def test_data_synth_writes_a_log_of_the_asked_size(tmp_path, capsys):
    import pandas as pd

    assert main(["data", "synth", "--rows", "300", "--users", "40", "--items", "10", "--seed", "2",
                 "--data-dir", str(tmp_path)]) == 0
    frame = pd.read_csv(capsys.readouterr().out.strip())
    assert len(frame) == 300 and frame["user_id"].max() <= 40 and frame["item_id"].max() <= 10


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"llmctr {version('llmctr')}"


def test_a_dataset_given_by_path_works_where_a_name_does(tmp_path):
    """An experiment naming its dataset YAML by a path relative to itself; the prepared data's default folder
    is ARTIFACTS/data/<the YAML's name>, as `llmctr data prepare my.yaml` writes it."""
    shutil.copy(configs_dir() / "datasets" / "synthetic.yaml", tmp_path / "my_data.yaml")
    (tmp_path / "my_data.yaml").write_text((tmp_path / "my_data.yaml").read_text().replace(
        "name: synthetic", "name: mine", 1))
    (tmp_path / "exp.yaml").write_text("name: my_exp\ndataset: my_data.yaml\nmodel: {name: fm}\n")
    exp = load_experiment(tmp_path / "exp.yaml")
    assert Path(exp.dataset) == tmp_path / "my_data.yaml"
    assert prepared_dir(exp.dataset, tmp_path / "art") == tmp_path / "art" / "data" / "mine"
    assert prepared_dir("ml1m", tmp_path / "art") == tmp_path / "art" / "data" / "ml1m"
    assert load_dataset_config(exp.dataset).name == "mine"


def test_stage_and_epoch_bars_draw_only_on_a_terminal(monkeypatch, capsys):
    """Long stages show a bar on a terminal; a log or CI gets none (only the stage's summary line)."""
    import io

    from llmctr.runtime import next_stage, stage_bar
    from llmctr.train.ctr.loop import epoch_bar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, drawn in ((io.StringIO(), False), (Terminal(), True)):
        monkeypatch.setattr("sys.stderr", stream)
        monkeypatch.setenv("COLUMNS", "100")
        with stage_bar("prepare demo", ["read", "write"]) as bar:
            next_stage(bar, "read")
            next_stage(bar, "write")
        assert ("prepare demo: 2/2 stages" in stream.getvalue()) == drawn, stream.getvalue()
    batches = [1, 2, 3]
    assert epoch_bar(batches, False, "epoch 1/1", 3) is batches  # not the first worker, or no terminal
