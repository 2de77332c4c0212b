"""serve_configs/*.yaml validate against Ray Serve's own schema and point at our builder."""

import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "serve_configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_serve_config_is_valid(path):
    schema = ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))
    for app in schema.applications:
        module, attr = app.import_path.split(":")
        assert callable(getattr(importlib.import_module(module), attr))
        placement = app.args.get("student_placement", "router")
        names = {dep.name for dep in app.deployments}
        # Serve refuses a config for a deployment the application does not have
        assert ("DistilledScorer" in names) == (placement == "deployment"), (placement, names)
        for dep in app.deployments:
            from llmctr.serve import graph

            assert hasattr(graph, dep.name), f"{dep.name} is not a deployment in llmctr.serve.graph"
            if dep.name == "Router":  # the routing section parses as the Router will parse it
                from llmctr.config import parse_config
                from llmctr.serve.routing import RoutingConfig

                parse_config(RoutingConfig, dep.user_config["routing"], f"{path.name} Router routing")


@pytest.mark.slow
def test_serve_run_local_yaml(trained_synthetic, tmp_path):
    """`serve run serve_configs/local.yaml` serves the latest student found in the folder it names (here without
    retriever and LLM head: the graph then routes every record to the student)."""
    cfg = yaml.safe_load(CONFIGS[[p.name for p in CONFIGS].index("local.yaml")].read_text())
    cfg["applications"][0]["args"] = {"student_dir": str(trained_synthetic.artifact.parent)}
    cfg["applications"][0]["deployments"] = [d for d in cfg["applications"][0]["deployments"]
                                             if d["name"] in ("Router", "DistilledScorer")]
    cfg["http_options"]["port"] = 8124
    config = tmp_path / "local.yaml"
    config.write_text(yaml.safe_dump(cfg))
    serve_bin = Path(sys.executable).parent / "serve"
    # its own local Ray, whatever another `ray start` left in Ray's temp dir (ray_current_cluster)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": "local"}
    proc = subprocess.Popen([str(serve_bin), "run", str(config)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                health = httpx.get("http://127.0.0.1:8124/healthz", timeout=2).json()
                break
            except (httpx.HTTPError, ValueError):
                time.sleep(1)
        else:
            pytest.fail("serve run did not come up")
        assert health["version"] == trained_synthetic.artifact.name
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_llmctr_serve_routes_cold_starts_by_the_datasets_entity_keys_by_default(tmp_path):
    from llmctr.data.feature_map import FeatureMap, FieldMap
    from llmctr.models.artifact import FEATURE_MAP, WEIGHTS
    from llmctr.serve.deploy import default_cold_fields

    version = tmp_path / "models" / "m" / "v1"
    version.mkdir(parents=True)
    (version / WEIGHTS).write_bytes(b"")
    fields = [FieldMap(name=n, kind="categorical", description="", source=n, vocab=["a"])
              for n in ("user_id", "gender", "movie_id", "title")]
    FeatureMap(dataset="ml1m", fields=fields).save(version / FEATURE_MAP)
    assert default_cold_fields(version) == ["user_id", "movie_id"]  # configs/datasets/ml1m.yaml's entities
    FeatureMap(dataset="no_such_dataset", fields=fields).save(version / FEATURE_MAP)
    assert default_cold_fields(version) == []
