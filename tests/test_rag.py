"""The LLM head's retrieved context: neighbours rendered as sentences after the request's own, and the fallback
retriever (the user's most recent train interactions)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmctr.data import FeatureMap, load_dataset_config
from llmctr.data.feature_map import FieldMap
from llmctr.semantics.rag import RecentHistory, build_contexts, render_context, render_contexts, request_texts

ML1M_MOVIES = {"2": ("Heat (1995)", "Action|Crime|Thriller"), "3": ("Casino (1995)", "Drama|Thriller"),
               "4": ("Nixon (1995)", "Drama"), "5": ("Toy Story (1995)", "Animation|Children's|Comedy")}


class FakeRetriever:
    """The retriever interface over hand-written histories: ids are feature-map ids (raw movie id N -> N + 10)."""

    user_field, item_field = "user_id", "movie_id"

    def __init__(self, history: dict[int, list[tuple[int, int, float]]]):
        self.history = history

    def encode_ids(self, field, raw_values):
        return np.array([int(v) + 10 if v is not None else 1 for v in raw_values])

    def raw_values(self, field, ids):
        return [str(int(i) - 10) for i in ids]

    def history_neighbours(self, user_ids, item_ids, k):
        return [self.history.get(int(u), [])[:k] for u in user_ids]


def test_rag_text_on_a_hand_example():
    fields = {f.name: f for f in load_dataset_config("ml1m").fields}
    items = {key: f"{title}, {', '.join(genres.split('|'))}" for key, (title, genres) in ML1M_MOVIES.items()}
    retriever = FakeRetriever({17: [(15, 1, 0.9), (12, 1, 0.8), (14, 0, 0.5), (13, -1, 0.4)],
                               18: [(13, 1, 0.9)]})
    records = [{"user_id": 7, "gender": "F", "age": "25", "occupation": "12", "movie_id": 3,
                "title": "Casino (1995)", "genres": "Drama|Thriller"},
               {"user_id": 9999, "gender": "M", "age": "1", "occupation": "4", "movie_id": 2,
                "title": "Heat (1995)", "genres": "Action|Crime|Thriller"}]
    contexts = build_contexts(records, retriever, items, k=3)
    # the candidate (Casino, id 13) is not its own neighbour; k=3 of the rest, in the retriever's order
    assert contexts == ["The user liked: Toy Story (1995), Animation, Children's, Comedy; Heat (1995), Action, "
                        "Crime, Thriller. The user disliked: Nixon (1995), Drama.", "The user has no history."]
    texts = request_texts(records, [fields[n] for n in ("gender", "age", "title")], contexts)
    assert texts[0] == ("The user's gender is female. The user's age group is 25-34. The movie's title and release "
                        "year is Casino (1995). " + contexts[0])
    assert render_context([("A", -1), ("B", 0)], "shopper") == "The shopper disliked: B. Related items: A."
    spec = {"items": items, "neighbours": 3, "subject": "user"}
    assert render_contexts(records, retriever, spec) == contexts
    assert render_contexts(records[:1], retriever, spec, k=1) == ["The user liked: Toy Story (1995), Animation, "
                                                                  "Children's, Comedy."]
    with pytest.raises(ValueError, match="1 contexts for 2 records"):
        request_texts(records, [], contexts[:1])


def test_recent_history_is_newest_first_without_the_candidate():
    fmap = FeatureMap(dataset="t", fields=[FieldMap("user_id", "categorical", "", "user_id", vocab=["7", "8"]),
                                           FieldMap("movie_id", "categorical", "", "movie_id", vocab=list("abcd"))])
    train = pd.DataFrame({"user_id": [2, 2, 3, 2, 2], "movie_id": [2, 3, 2, 4, 5], "label": [1.0, 0.0, 1.0, 1.0, 0.0]})
    recent = RecentHistory(train, fmap, "user_id", "movie_id", "label")
    found = recent.history_neighbours(np.array([2, 2, 1]), np.array([4, 9, 2]), k=2)
    assert found == [[(5, 0, 0.0), (3, 0, 0.0)], [(5, 0, 0.0), (4, 1, 0.0)], []]
    assert recent.raw_values("movie_id", [5, 2, 1]) == ["d", "a", None]
    np.testing.assert_array_equal(recent.encode_ids("user_id", [7, "8", 99]), [2, 3, 1])
