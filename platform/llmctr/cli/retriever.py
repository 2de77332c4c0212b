"""`llmctr retriever train|query`: the LightGCN retriever of the scoring graph (Ray Train) and a look at what it
retrieves for one request."""

from __future__ import annotations

import argparse
import json

from llmctr.cli.common import add_common, add_training, apply_training


def cmd_retriever_train(args) -> int:
    from llmctr.data import prepared_dir
    from llmctr.runtime import init_ray
    from llmctr.train.retriever import fit_retriever, load_retriever_config

    config = load_retriever_config(args.retriever)
    apply_training(config.train, args)
    init_ray(args.address)
    result = fit_retriever(config, args.data or prepared_dir(config.dataset, args.artifacts), artifacts=args.artifacts)
    print(json.dumps({"artifact": str(result.artifact), **result.metrics}, indent=1, default=float))
    return 0


def _named(retriever, field: str, ids, scores) -> list[dict]:
    raw = retriever.raw_values(field, ids)
    return [{"id": int(i), field: r, "score": round(float(s), 5)} for i, r, s in zip(ids, raw, scores) if i >= 0]


def cmd_retriever_query(args) -> int:
    from llmctr.config import ConfigError
    from llmctr.models.retriever import Retriever

    if args.user is None and args.item is None:
        raise ConfigError("give --user, --item or both")
    retriever = Retriever.load(args.path, index_kind=args.index, backend=args.backend)
    uf, itf, k = retriever.user_field, retriever.item_field, args.k
    out = {"retriever": retriever.meta["name"], "version": retriever.version, "index": retriever.item_index.kind}
    user = retriever.encode_ids(uf, [args.user]) if args.user is not None else None
    item = retriever.encode_ids(itf, [args.item]) if args.item is not None else None
    if user is not None:
        out["user"] = {uf: args.user, "id": int(user[0]), "known": bool(retriever.known_users(user)[0])}
        out["items_for_user"] = _named(retriever, itf, *(a[0] for a in retriever.items_for_users(user, k)))
        out["similar_users"] = _named(retriever, uf, *(a[0] for a in retriever.similar_users(user, k)))
    if item is not None:
        out["item"] = {itf: args.item, "id": int(item[0]), "known": bool(retriever.known_items(item)[0])}
        out["similar_items"] = _named(retriever, itf, *(a[0] for a in retriever.similar_items(item, k)))
    if user is not None and item is not None:
        rows = retriever.history_neighbours(user, item, k)[0]
        raw = retriever.raw_values(itf, [i for i, _, _ in rows])
        out["history_neighbours"] = [{"id": i, itf: r, "label": label, "similarity": round(s, 5)}
                                     for (i, label, s), r in zip(rows, raw)]
    print(json.dumps(out, indent=1))
    return 0


def register(sub) -> None:
    group = sub.add_parser("retriever", help="the LightGCN retriever: train it on Ray Train, query an artifact")
    commands = group.add_subparsers(dest="retriever_command", required=True)
    p = commands.add_parser("train", help="train a retriever (configs/retrievers/NAME.yaml or a path) on Ray Train")
    p.add_argument("retriever")
    add_training(p, batch_size=False, precision=False)
    add_common(p)
    p.set_defaults(func=cmd_retriever_train)

    p = commands.add_parser("query", help="what a retriever artifact returns for a user and/or a candidate item "
                                          "(JSON)")
    p.add_argument("path", help="retriever folder (its LATEST version) or a version folder")
    p.add_argument("--user", help="raw user id, as in the raw data")
    p.add_argument("--item", help="raw item id (the candidate), as in the raw data")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--index", choices=["auto", "flat", "ivf", "hnsw"], default="auto",
                   help="index kind (default auto: the retriever config's index_kind)")
    p.add_argument("--backend", choices=["faiss", "torch"], default="faiss")
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    p.set_defaults(func=cmd_retriever_query)
