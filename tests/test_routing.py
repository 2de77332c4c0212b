"""The routing rule shared by the Serve router and the offline benchmarks."""

import numpy as np
import pytest

from llmctr.config import ConfigError, parse_config
from llmctr.serve.routing import RoutingConfig, admit, cold_start_mask, llm_route_mask, routed_probabilities


def test_band_and_cold_start_pick_the_llm_path():
    probs = np.array([0.05, 0.39, 0.4, 0.5, 0.6, 0.61, 0.95])
    cold = np.array([False, False, False, False, False, False, True])
    config = RoutingConfig(band=(0.4, 0.6))
    assert llm_route_mask(probs, cold, config).tolist() == [False, False, True, True, True, False, True]
    no_cold = RoutingConfig(band=(0.4, 0.6), cold_start=False)
    assert llm_route_mask(probs, cold, no_cold).tolist() == [False, False, True, True, True, False, False]
    assert not llm_route_mask(probs, None, RoutingConfig(band=(0.0, 0.0))).any()


def test_cold_start_is_an_oov_id_in_any_named_field():
    encoded = {"user_id": np.array([5, 1, 7, 9]), "movie_id": np.array([3, 4, 1, 6]),
               "genres": np.array([[1, 0], [2, 3], [2, 0], [4, 1]])}
    assert cold_start_mask(encoded, ["user_id", "movie_id"]).tolist() == [False, True, True, False]
    assert cold_start_mask(encoded, ["genres"]).tolist() == [True, False, False, True]
    assert not cold_start_mask(encoded, []).any()


def test_routed_answer_takes_the_llm_probability_only_where_routed():
    student, llm = np.array([0.1, 0.5, 0.9]), np.array([0.2, 0.7, 0.3])
    assert routed_probabilities(student, llm, np.array([False, True, False])).tolist() == [0.1, 0.7, 0.9]


@pytest.mark.parametrize("band", [(0.7, 0.3), (-0.1, 0.5), (0.2, 1.5)])
def test_band_must_be_an_ordered_probability_interval(band):
    with pytest.raises(ConfigError, match="band"):
        parse_config(RoutingConfig, {"band": list(band)})


def test_admission_keeps_cold_records_then_the_most_unsure_up_to_the_capacity():
    probs = np.array([0.45, 0.9, 0.51, 0.58, 0.49, 0.42])
    mask = np.array([True, False, True, True, True, True])
    cold = np.array([False, False, False, True, False, False])
    assert admit(mask, probs, cold, None).tolist() == mask.tolist()
    assert admit(mask, probs, cold, 10).tolist() == mask.tolist()
    # cold first (index 3), then |p - 0.5|: 0.51 (2), 0.49 (4), 0.45 (0), 0.42 (5)
    assert np.flatnonzero(admit(mask, probs, cold, 3)).tolist() == [2, 3, 4]
    assert np.flatnonzero(admit(mask, probs, None, 2)).tolist() == [2, 4]
    assert not admit(mask, probs, cold, 0).any()
    tied = admit(np.ones(4, bool), np.full(4, 0.5), None, 2)
    assert np.flatnonzero(tied).tolist() == [0, 1], "ties keep the request order"


@pytest.mark.parametrize("key", ["max_llm_records", "max_llm_inflight"])
def test_admission_caps_are_counts(key):
    assert getattr(parse_config(RoutingConfig, {key: 8}), key) == 8
    with pytest.raises(ConfigError, match=key):
        parse_config(RoutingConfig, {key: -1})
