"""The routing rule shared by the Serve router and the offline benchmarks."""

import numpy as np
import pytest

from llmctr.config import ConfigError, parse_config
from llmctr.serve.routing import (
    Admission,
    RoutingConfig,
    admit,
    cold_start_mask,
    inflight_cap,
    llm_route_mask,
    routed_probabilities,
)


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
    assert parse_config(RoutingConfig, {"max_llm_inflight": "auto"}).max_llm_inflight == "auto"
    with pytest.raises(ConfigError, match="max_llm_records"):
        parse_config(RoutingConfig, {"max_llm_records": "auto"})
    assert (inflight_cap("auto"), inflight_cap("8")) == ("auto", 8)  # the command-line form
    with pytest.raises(ValueError):
        inflight_cap("eight")


def test_fixed_caps_count_the_records_in_flight():
    adm = Admission(RoutingConfig(max_llm_records=15, max_llm_inflight=40))
    assert adm.capacity() == 15, "the per-request cap is the tighter one while nothing is in flight"
    adm.start(30)
    assert adm.capacity() == 10
    adm.start(10)
    assert adm.capacity() == 0
    adm.finish(30, 0.1, "llm")
    assert adm.capacity() == 15
    assert Admission(RoutingConfig()).capacity() is None


def test_auto_cap_follows_what_the_llm_path_finishes_per_deadline():
    adm = Admission(RoutingConfig(max_llm_inflight="auto", deadline_ms=500), smoothing=1.0, headroom=1.0)
    assert adm.capacity() is None, "nothing measured yet: no cap"
    adm.start(20)
    adm.finish(20, 0.25, "llm")  # 80 records/s -> 40 per 500 ms deadline
    assert adm.rate == pytest.approx(80) and adm.capacity() == 40
    adm.start(30)
    assert adm.capacity() == 10
    adm.finish(30, 0.9, "deadline")  # late: the rate was at most 30 / 0.5 s
    assert adm.rate == pytest.approx(60) and adm.capacity() == 30
    adm.start(5)
    adm.finish(5, 0.01, "error")  # a failure says nothing about speed
    assert adm.rate == pytest.approx(60)
    slow = Admission(RoutingConfig(max_llm_inflight="auto", deadline_ms=100), smoothing=1.0)
    slow.start(20)
    slow.finish(20, 10.0, "llm")  # 2 records/s: less than one record per deadline
    assert slow.capacity() == 1, "with nothing in flight one record still goes, so the estimate can recover"
    slow.start(1)
    assert slow.capacity() == 0


def test_auto_cap_smooths_its_rate():
    adm = Admission(RoutingConfig(max_llm_inflight="auto", deadline_ms=1000), smoothing=0.5, headroom=1.0)
    for seconds in (1.0, 0.5):
        adm.start(10)
        adm.finish(10, seconds, "llm")
    assert adm.rate == pytest.approx(15.0)  # 10/s, then halfway to 20/s
