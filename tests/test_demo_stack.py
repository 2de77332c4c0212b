"""`llmctr demo --dataset ANY.yaml`: the stack it derives from a dataset YAML, or its refusal before any work."""

import pytest
import yaml

from llmctr.config import REPO_ROOT, ConfigError
from llmctr.demo import demo_stack


def _yaml(tmp_path, entities):
    config = yaml.safe_load((REPO_ROOT / "configs/datasets/synthetic.yaml").read_text())
    config.update(name="shop", generator=None)
    if entities is None:
        config.pop("entities")
    else:
        config["entities"] = entities
    path = tmp_path / "shop.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_dataset_with_user_and_item_entities_gets_the_whole_graph(tmp_path):
    path = _yaml(tmp_path, {"user": {"key": "user_id", "fields": ["user_group"]},
                            "item": {"key": "item_id", "fields": ["item_category"]}})
    stack = demo_stack(str(path))
    assert (stack.exp.name, stack.plain.name, stack.retriever.name, stack.head.name) == (
        "shop_deepfm_elec", "shop_deepfm", "shop_lightgcn", "shop_minilm")
    assert {stack.exp.dataset, stack.plain.dataset, stack.retriever.dataset, stack.head.dataset} == {str(path)}
    assert stack.exp.distill is not None and stack.plain.distill is None


def test_a_dataset_without_entities_gets_the_student_alone(tmp_path):
    stack = demo_stack(str(_yaml(tmp_path, None)))
    assert stack.exp.name == "shop_deepfm" and stack.exp.distill is None
    assert stack.plain is stack.retriever is stack.head is None


def test_entities_the_demo_cannot_use_are_refused_with_what_is_missing(tmp_path):
    path = _yaml(tmp_path, {"shopper": {"key": "user_id", "fields": ["user_group"]}})
    with pytest.raises(ValueError, match="entities named 'user' and 'item'.*\\['shopper'\\]"):
        demo_stack(str(path))
    with pytest.raises(ConfigError, match="missing.yaml"):
        demo_stack(str(tmp_path / "missing.yaml"))
