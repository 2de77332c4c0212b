"""cluster.yaml passes Ray's own autoscaler config validation (no cloud call)."""

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"


def _load():
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_cluster_yaml_validates():
    config = prepare_config(_load())
    validate_config(config)
    types = config["available_node_types"]
    assert {"head", "cpu_worker", "gpu_worker"} <= set(types)
    assert types["gpu_worker"]["node_config"]["InstanceType"].startswith("g")
    assert types["cpu_worker"]["max_workers"] >= types["cpu_worker"]["min_workers"]
    assert any("[gpu]" in cmd for cmd in config["setup_commands"])
    assert config["head_start_ray_commands"] and config["worker_start_ray_commands"]


def test_validation_rejects_a_broken_config():
    config = copy.deepcopy(_load())
    config["available_node_types"]["cpu_worker"]["min_workers"] = "many"
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(config))
