"""History variants named in one word, as the history benchmark and probe take them on the command line:
``POOLING[:MAX_LEN][:nosplit][:sg][:dropP][:sem[:cand][:nocos][:cold]]``, e.g. ``target_attention:20:sg`` (DIN attention
over the 20 most recent entries, history reading the item embeddings without training them), ``mean:50:drop0.5``,
or ``target_attention:20:drop0.5:sem`` (the same history also read through the items' LLM vectors: ``sem``, with
the candidate's own vector as a field: ``cand``, without the cosine field: ``nocos``; a candidate unseen in training
read through its own record's text instead of the "unknown" vector: ``cold``)."""

from __future__ import annotations

from llmctr.config import parse_config
from llmctr.models.layers import HistoryConfig

SEMANTIC_PARTS = {"cand": ("candidate", True), "nocos": ("cosines", False), "cold": ("cold_texts", True)}


def history_config(spec: str) -> HistoryConfig:
    pooling, *parts = spec.split(":")
    options: dict = {"pooling": pooling}
    for part in parts:
        if part == "sem":
            options["semantic"] = {}
        elif part in SEMANTIC_PARTS and "semantic" in options:
            key, value = SEMANTIC_PARTS[part]
            options["semantic"][key] = value
        elif part.isdigit():
            options["max_len"] = int(part)
        elif part == "nosplit":
            options["split_by_label"] = False
        elif part == "sg":
            options["stop_gradient"] = True
        elif part.startswith("drop"):
            options["item_dropout"] = float(part[4:])
        else:
            raise ValueError(f"unknown part {part!r} of history variant {spec!r} "
                             "(POOLING[:MAX_LEN][:nosplit][:sg][:dropP][:sem[:cand][:nocos][:cold]])")
    return parse_config(HistoryConfig, options, "history")
