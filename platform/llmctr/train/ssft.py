"""SSFT (``llmctr.semantics.ssft``) as a Ray Train job: the examples on the driver, the LoRA adapter fine-tuned in
the workers, rank 0's adapter cached by (dataset, encoder, SSFT config, feature map)."""

from __future__ import annotations

import json
import logging
import random
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from llmctr.config import dump_config, parse_config
from llmctr.data.feature_map import FeatureMap
from llmctr.data.schema import DatasetConfig
from llmctr.semantics.encoders import EncoderConfig, HFEncoder
from llmctr.semantics.ssft import (
    ADAPTER,
    EVAL_PROMPTS,
    REPORT,
    SSFTConfig,
    add_lora,
    cache_key,
    evaluate_loss,
    ssft_examples,
    train_adapter,
)
from llmctr.train.job import start_worker, torch_trainer

log = logging.getLogger(__name__)


def ssft_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train loop: shard the examples by rank, fine-tune, rank 0 reports the adapter as the checkpoint."""
    import ray.train
    import ray.train.torch

    cfg = parse_config(SSFTConfig, config["ssft"], "ssft")
    enc_cfg = parse_config(EncoderConfig, config["encoder"], "encoder")
    rank, world, device = start_worker(cfg.seed, config["threads"])
    encoder = HFEncoder(replace(enc_cfg, adapter=None, max_length=cfg.max_length, device=str(device.type)))
    add_lora(encoder, cfg)
    if world > 1:
        encoder.model = ray.train.torch.prepare_model(encoder.model)
    prompts, labels = config["prompts"][rank::world], config["labels"][rank::world]
    t0 = time.perf_counter()
    # the loss before/after is measured on a fixed sample (a full pass costs as much as training)
    held = random.Random(cfg.seed).sample(range(len(prompts)), min(len(prompts), EVAL_PROMPTS))
    sample = ([prompts[i] for i in held], [labels[i] for i in held], config["fields"], cfg)
    first = evaluate_loss(encoder, *sample)
    history = train_adapter(encoder, prompts, labels, config["fields"], cfg)
    last = evaluate_loss(encoder, *sample)
    metrics = {"loss_before": first, "loss_after": last, "loss_history": history,
               "train_seconds": time.perf_counter() - t0, "examples": len(config["prompts"])}
    if rank != 0:
        ray.train.report(metrics, checkpoint=None)
        return
    model = encoder.model.module if world > 1 else encoder.model
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(str(Path(d) / ADAPTER), safe_serialization=True)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))


def run_ssft(prepared: str | Path, dataset: DatasetConfig, encoder: EncoderConfig, cfg: SSFTConfig,
             cache_root: str | Path, force: bool = False) -> Path:
    """Fine-tune the adapter as a Ray Train job (or reuse the cached one); returns the adapter folder.

    ``<cache_root>/<dataset>/<key>/`` holds ``adapter/`` (peft, safetensors) and ``ssft.json`` (losses,
    seconds, examples)."""
    fmap_path = Path(prepared) / "feature_map.json"
    if not fmap_path.is_file():
        raise FileNotFoundError(f"no prepared dataset at {prepared} (run: llmctr data prepare {dataset.name})")
    final = Path(cache_root) / dataset.name / cache_key(dataset, fmap_path, encoder, cfg)
    if (final / ADAPTER).is_dir() and not force:
        log.info("SSFT adapter up to date: %s", final / ADAPTER)
        return final / ADAPTER
    prompts, labels, fields = ssft_examples(dataset, FeatureMap.load(fmap_path), cfg)
    trainer = torch_trainer(
        ssft_loop_per_worker, {"ssft": dump_config(cfg), "encoder": dump_config(encoder), "prompts": prompts,
                               "labels": labels, "fields": fields},
        cfg, name=f"ssft-{dataset.name}", storage_path=str(Path(cache_root).resolve() / "ray_results"))
    log.info("SSFT on %d prompts over %d fields (%d worker(s))", len(prompts), len(fields), cfg.num_workers)
    t0 = time.time()
    result = trainer.fit()
    if result.error:
        raise RuntimeError(f"SSFT failed: {result.error}") from result.error
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with result.checkpoint.as_directory() as d:
        shutil.copytree(Path(d) / ADAPTER, tmp / ADAPTER)
    report = {**result.metrics, "wall_seconds": time.time() - t0, "fields": fields,
              "encoder": dump_config(encoder), "ssft": dump_config(cfg)}
    (tmp / REPORT).write_text(json.dumps(report, indent=1, default=float))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    log.info("SSFT contrastive loss %.4f -> %.4f; adapter %s", report["loss_before"], report["loss_after"],
             final / ADAPTER)
    return final / ADAPTER
