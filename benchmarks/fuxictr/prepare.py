"""FuxiCTR's preprocessing of ML-1M, for ``benchmarks.wall_vs_fuxictr``: runs INSIDE the FuxiCTR venv
(``benchmarks/.venv-fuxictr/bin/python benchmarks/fuxictr/prepare.py --raw DIR --out DIR``), timed from outside as
a whole process.

From the same raw files ``llmctr data prepare ml1m`` reads (configs/datasets/ml1m.yaml): the ratings (``ratings.dat``,
else the shared copy ``ratings_users1-2999.dat``) joined with users.dat and movies.dat, label 1 if rating >= 4 and 0
if <= 2 (3 dropped), sorted by (timestamp, user_id, movie_id) and split 8:1:1 in time order (the same split sizes
as ours). FuxiCTR reads CSV only (its polars reader takes a one-byte separator, the raw files use "::"), so this
glue is done with pandas and written as three CSVs; then FuxiCTR's own pipeline: ``FeatureProcessor`` (the seven
categorical fields, vocabularies fitted on train) and ``build_dataset`` (fit, then transform every split through
Ray Data into parquet, with the Ray start it does itself; here a private local Ray with FuxiCTR's own arguments,
so it never joins another cluster on this machine).

Prints ONE JSON line: rows per split and the seconds of each stage.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time

import pandas as pd

FIELDS = ["user_id", "gender", "age", "occupation", "movie_id", "title", "genres"]
LABEL = "label"


def read_dat(path: str, names: list[str], encoding: str) -> pd.DataFrame:
    with open(path, encoding=encoding) as fh:
        rows = [line.rstrip("\n").split("::") for line in fh if line.strip()]
    return pd.DataFrame(rows, columns=names)


def glue(raw: str, work: str) -> dict[str, str]:
    """Join, label, split in time order; one CSV per split. Returns split → CSV path."""
    ratings_file = next(os.path.join(raw, f) for f in ("ratings.dat", "ratings_users1-2999.dat")
                        if os.path.exists(os.path.join(raw, f)))
    ratings = read_dat(ratings_file, ["user_id", "movie_id", "rating", "timestamp"], "utf-8")
    for col in ratings.columns:
        ratings[col] = ratings[col].astype("int64")
    users = read_dat(os.path.join(raw, "users.dat"), ["user_id", "gender", "age", "occupation", "zip"], "latin-1")
    movies = read_dat(os.path.join(raw, "movies.dat"), ["movie_id", "title", "genres"], "latin-1")
    users["user_id"] = users["user_id"].astype("int64")
    movies["movie_id"] = movies["movie_id"].astype("int64")
    frame = ratings[ratings["rating"] != 3].merge(users, on="user_id", how="left").merge(movies, on="movie_id",
                                                                                        how="left")
    frame[LABEL] = (frame["rating"] >= 4).astype("float32")
    frame = frame.sort_values(["timestamp", "user_id", "movie_id"], kind="stable").reset_index(drop=True)
    n = len(frame)
    n_train, n_valid = int(n * 0.8), int(n * 0.1)
    bounds = {"train": (0, n_train), "valid": (n_train, n_train + n_valid), "test": (n_train + n_valid, n)}
    paths = {}
    for split, (lo, hi) in bounds.items():
        paths[split] = os.path.join(work, f"{split}.csv")
        frame.iloc[lo:hi][[*FIELDS, LABEL]].to_csv(paths[split], index=False)
    return paths


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw", required=True, help="folder of the raw ML-1M files")
    p.add_argument("--out", required=True, help="FuxiCTR's data root; the dataset lands in OUT/ml1m (replaced)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    t_process = time.perf_counter()
    data_dir = os.path.join(args.out, "ml1m")
    shutil.rmtree(data_dir, ignore_errors=True)  # build_dataset skips a dataset whose feature_map.json exists
    csv_dir = os.path.join(args.out, "csv")
    os.makedirs(csv_dir, exist_ok=True)
    t0 = time.perf_counter()
    csv = glue(args.raw, csv_dir)
    t_glue = time.perf_counter() - t0

    t0 = time.perf_counter()
    import ray
    from fuxictr.preprocess import FeatureProcessor, build_dataset

    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    # FuxiCTR's build_dataset.init_ray arguments, plus address="local": a Ray of its own
    site = os.path.dirname(os.path.dirname(os.path.abspath(ray.__file__)))
    ray.init(address="local", ignore_reinit_error=True, logging_level=logging.ERROR, log_to_driver=True,
             runtime_env={"env_vars": {"PYTHONPATH": site}})
    ray.data.DataContext.get_current().enable_progress_bars = True
    t_ray = time.perf_counter() - t0
    t0 = time.perf_counter()
    processor = FeatureProcessor(feature_cols=[{"name": FIELDS, "active": True, "dtype": "str",
                                                "type": "categorical"}],
                                 label_col={"name": LABEL, "dtype": "float"}, dataset_id="ml1m", data_root=args.out)
    splits = build_dataset(processor, train_data=csv["train"], valid_data=csv["valid"], test_data=csv["test"])
    t_fuxictr = time.perf_counter() - t0
    rows = {name: len(pd.read_parquet(path, columns=[LABEL])) for name, path in zip(("train", "valid", "test"),
                                                                                      splits)}
    print(json.dumps({"data_dir": data_dir, "rows": rows, "glue_seconds": t_glue, "import_seconds": t_import,
                      "ray_init_seconds": t_ray, "fuxictr_seconds": t_fuxictr,
                      "process_seconds": time.perf_counter() - t_process}), flush=True)


if __name__ == "__main__":
    main()
