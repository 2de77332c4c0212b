"""The README's "Your own data, end to end" section, run as written: its two YAML files and its commands, on a
generated clicks.csv with the columns it describes (a numeric, a multi-valued and a text field). Only the artifacts
folder and the port differ (the suite's own)."""

import json
import re
import shlex

import httpx
import numpy as np
import pandas as pd

from llmctr.config import REPO_ROOT

PORT = 8141


def _section() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    start = readme.index("## Your own data, end to end")
    return readme[start:readme.index("\n## ", start + 1)]


def _blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


def _commands(section: str) -> list[list[str]]:
    """The bash block's commands (continuation lines joined, comments dropped), split like a shell would."""
    (script,) = _blocks(section, "bash")
    return [shlex.split(line, comments=True) for line in script.replace("\\\n", " ").splitlines() if line.strip()]


def _clicks(rows: int = 6000, seed: int = 0) -> pd.DataFrame:
    """A click log with the README's columns: clicks depend on the item's first tag (shoes and sale sell) and on the
    user's taste for it."""
    rng = np.random.default_rng(seed)
    tags = np.array(["shoes", "sale", "outdoor", "kids", "books"])
    users, items = rng.integers(1, 80, rows), rng.integers(1, 120, rows)
    first = tags[items % len(tags)]
    second = np.where(rng.random(rows) < 0.5, "|" + tags[(items // 5) % len(tags)], "")
    likes = tags[users % len(tags)]
    p = np.clip(np.where(np.isin(first, ["shoes", "sale"]), 0.6, 0.1) + np.where(first == likes, 0.3, 0.0), 0, 1)
    return pd.DataFrame({
        "user_id": users, "item_id": items, "price": np.round(rng.gamma(2.0, 20.0, rows), 2),
        "tags": [a + b for a, b in zip(first, second)], "title": [f"{t} item {i}" for t, i in zip(first, items)],
        "ts": 1_700_000_000 + np.arange(rows) * 60, "click": (rng.random(rows) < p).astype(int)})


def test_the_readme_walkthrough_runs_as_written(ray_local, tmp_path, monkeypatch, capsys):
    from ray import serve

    from llmctr.cli import main

    section = _section()
    for block in _blocks(section, "yaml"):
        name = block.splitlines()[0].removeprefix("# ").strip()
        (tmp_path / name).write_text(block)
    header = _blocks(section, "text")[0].splitlines()[0].split(",")
    frame = _clicks()
    assert list(frame.columns) == header, "the generated log has the README's columns"
    frame.to_csv(tmp_path / "clicks.csv", index=False)
    monkeypatch.chdir(tmp_path)
    prepare, pipeline, curl = _commands(section)
    assert prepare[:3] == ["llmctr", "data", "prepare"] and pipeline[:2] == ["llmctr", "pipeline"]
    art = ["--artifacts", str(tmp_path / "art")]
    try:
        assert main(prepare[1:] + art) == 0
        manifest = json.loads((tmp_path / "art" / "data" / "my_data" / "manifest.json").read_text())
        assert manifest["rows_read"] == len(frame) and manifest["rows_quarantined"] == 0
        capsys.readouterr()
        assert main(pipeline[1:] + art + ["--port", str(PORT)]) == 0
        out = capsys.readouterr().out
        result = json.loads(out[out.index("{"):])
        assert result["test_auc"] > 0.6, result  # the planted taste is learnt
        body = json.loads(curl[curl.index("-d") + 1])
        url = curl[2].replace("localhost:8000", f"http://127.0.0.1:{PORT}")
        resp = httpx.post(url, json=body, timeout=30)
        assert resp.status_code == 200, resp.text
        (prob,) = resp.json()["probabilities"]
        assert 0 < prob < 1
        missing = {"records": [{k: v for k, v in body["records"][0].items() if k != "price"}]}
        resp = httpx.post(url, json=missing, timeout=30)
        assert resp.status_code == 422 and "price" in resp.text
    finally:
        serve.shutdown()

