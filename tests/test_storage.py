"""Storage locations: local folders and pyarrow filesystem URIs (``s3://`` against a local moto endpoint)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llmctr import storage

moto_server = pytest.importorskip("moto.server")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def s3(monkeypatch, tmp_path):
    """A local S3 endpoint with an empty bucket ``llmctr``; yields the bucket URI."""
    import boto3

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for key, value in {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "test",
                       "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
                       "LLMCTR_CACHE": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3").create_bucket(Bucket="llmctr")
    yield "s3://llmctr"
    server.stop()


def test_join_keeps_local_paths_and_uris_apart(tmp_path):
    assert storage.join(tmp_path, "a", "b") == tmp_path / "a" / "b"
    assert storage.join("s3://bucket/prefix/", "a", "/b") == "s3://bucket/prefix/a/b"
    assert storage.is_uri("gs://x") and not storage.is_uri(tmp_path)


def test_text_pointer_and_folder_roundtrip_on_s3(s3, tmp_path):
    root = storage.join(s3, "team")
    assert not storage.exists(storage.join(root, "LATEST"))
    local = tmp_path / "v1"
    (local / "sub").mkdir(parents=True)
    (local / "a.json").write_text('{"x": 1}')
    (local / "sub" / "b.txt").write_text("deep")
    storage.upload_dir(local, storage.join(root, "v1"))
    assert storage.follow_pointer(root, "LATEST") == root, "no pointer yet: the folder itself"
    storage.write_text(storage.join(root, "LATEST"), "v1\n")
    assert storage.follow_pointer(root, "LATEST") == storage.join(root, "v1")
    copy = storage.local_copy(storage.join(root, "v1"))
    assert json.loads((copy / "a.json").read_text()) == {"x": 1} and (copy / "sub" / "b.txt").read_text() == "deep"
    assert storage.local_copy(storage.join(root, "v1")) == copy, "a version is downloaded once"
    with pytest.raises(FileNotFoundError, match="no such folder"):
        storage.local_copy(storage.join(root, "v2"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        storage.read_text(storage.join(root, "missing.txt"))


def test_model_artifact_on_s3_roundtrip(s3):
    from llmctr.data.feature_map import FeatureMap, FieldMap
    from llmctr.models import ModelConfig
    from llmctr.models.artifact import build_model, load_artifact, save_artifact

    fmap = FeatureMap(dataset="t", fields=[FieldMap(name="u", kind="categorical", description="", source="u",
                                                    vocab=["a", "b"])], label="label")
    config = ModelConfig(name="fm", embedding_dim=4)
    model = build_model(fmap, config)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    first = save_artifact(storage.join(s3, "models"), "m", state, config, fmap, {"test_auc": 0.5})
    second = save_artifact(storage.join(s3, "models"), "m", state, config, fmap, {"test_auc": 0.6})
    assert str(first).startswith("s3://llmctr/models/m/v") and first != second
    loaded, fmap2, meta = load_artifact(storage.join(s3, "models", "m"))
    assert meta["path"] == str(second) and meta["metrics"]["test_auc"] == 0.6
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[key])
    with pytest.raises(FileNotFoundError, match="no model artifact"):
        load_artifact(storage.join(s3, "models", "other"))


@pytest.mark.slow  # 67 s; the S3 round trips above stay in the default suite
def test_prepare_train_and_score_through_s3(synthetic_source, tmp_path):
    """The whole chain on s3:// (Ray Data writes and reads the splits, Ray Train stores its checkpoints, the
    artifact and run table land in the bucket, the scorer loads the LATEST version from it)."""
    env = {**os.environ, "LLMCTR_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO / "platform")}
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "s3_scenario.py"), str(synthetic_source.parent)],
                          capture_output=True, text=True, timeout=400, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the scenario's answer is its last JSON line (Ray's own warnings may follow it on stdout)
    seen = json.loads(next(line for line in reversed(proc.stdout.splitlines()) if line.startswith("{")))
    assert seen["data"] == "s3://llmctr/team/data/synthetic" and seen["current"].startswith("v")
    assert seen["same_data_again"], "an up-to-date prepared dataset is reused"
    assert seen["local_engine_same_rows"], "the in-process prepare writes to s3:// too"
    assert seen["rows"]["train"] > 0 and seen["artifact"].endswith(seen["latest"])
    assert seen["artifact"].startswith("s3://llmctr/team/models/synthetic_deepfm/")
    assert seen["runs"] == 1 and seen["ray_results"]
    assert seen["scored"] == 20 and seen["probs_ok"] and seen["test_auc"] > 0.6


def test_local_locations_become_absolute_for_ray_workers(tmp_path, monkeypatch):
    from llmctr import storage

    monkeypatch.chdir(tmp_path)
    assert storage.as_location("data/ml1m") == tmp_path / "data" / "ml1m"
    assert storage.as_location("s3://bucket/data/ml1m") == "s3://bucket/data/ml1m"


def test_publish_version_shows_a_version_only_when_complete(tmp_path):
    parent = tmp_path / "things" / "a"
    with storage.publish_version(parent) as (folder, version):
        (folder / "x.json").write_text("1")
        assert not (parent / "LATEST").exists() and not (parent / version).exists()
    assert (parent / "LATEST").read_text().strip() == version
    assert storage.resolve_version(parent, "x.json") == parent / version
    assert storage.resolve_version(parent / version, "x.json") == parent / version
    with pytest.raises(RuntimeError, match="half-written"):
        with storage.publish_version(parent) as (folder, _):
            (folder / "x.json").write_text("2")
            raise RuntimeError("half-written")
    assert (parent / "LATEST").read_text().strip() == version, "a failed write leaves the previous version current"
    assert sorted(p.name for p in parent.iterdir()) == ["LATEST", version], "and no temporary folder behind"
    with pytest.raises(FileNotFoundError, match=r"no widget at .* \(expected y.json or a LATEST file\)"):
        storage.resolve_version(tmp_path, "y.json", what="widget")
