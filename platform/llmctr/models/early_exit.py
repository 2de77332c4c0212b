"""A transformer CTR scorer with an exit head after several layers, for early exit at inference.

Each head pools its layer's hidden states (mean over the attention mask) and adds a correction to a base
logit: ``logit_k = base_logit + head_k(h_k)``. The base logit is the distilled student's, so a head that has
learnt nothing (heads start at zero) answers exactly as the student does, and the LLM path can only be sent
records to improve on; ``base_logit=None`` gives plain heads (``logit_k = head_k(h_k)``).

At inference the layers run one at a time; after an exit layer the rows whose confidence ``|2p - 1|`` reaches
that head's threshold leave the batch, so the later layers run on the remaining rows only. BERT-family
encoders (MiniLM) and Llama-family decoders (``model.layers`` + rotary embeddings: Llama, Qwen2, Mistral) are
supported; a LoRA-wrapped (peft) model works as is, its adapters live inside the same layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from llmctr.semantics.encoders import mean_pool


def exit_confidence(probs):
    """How sure a head is: 0 at p = 0.5, 1 at p = 0 or 1 (numpy or torch)."""
    return abs(probs - 0.5) * 2


def leaves(confidence, threshold: float):
    """The exit rule, shared by the model and the threshold calibration: confidence >= threshold, and a
    threshold of 1.0 (or more) never exits early."""
    return (confidence >= threshold) & (threshold < 1.0)


class _EncoderStack:
    """BERT family: ``embeddings`` + ``encoder.layer``; bidirectional attention over the padding mask."""

    def __init__(self, transformer: nn.Module):
        self.t = transformer

    @property
    def layers(self) -> nn.ModuleList:
        return self.t.encoder.layer

    def embed(self, input_ids: Tensor, token_type_ids: Tensor | None) -> Tensor:
        return self.t.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)

    def layer_args(self, hidden: Tensor, mask: Tensor) -> dict:
        from transformers.masking_utils import create_bidirectional_mask

        return {"attention_mask": create_bidirectional_mask(config=self.t.config, inputs_embeds=hidden,
                                                            attention_mask=mask)}


class _DecoderStack:
    """Llama family: ``embed_tokens`` + ``layers`` + ``rotary_emb``; causal attention over the padding mask.
    The final norm is not applied (the heads normalise their pooled vector themselves)."""

    def __init__(self, transformer: nn.Module):
        self.t = transformer

    @property
    def layers(self) -> nn.ModuleList:
        return self.t.layers

    def embed(self, input_ids: Tensor, token_type_ids: Tensor | None) -> Tensor:
        return self.t.embed_tokens(input_ids)

    def layer_args(self, hidden: Tensor, mask: Tensor) -> dict:
        from transformers.masking_utils import create_causal_mask

        positions = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
        causal = create_causal_mask(config=self.t.config, inputs_embeds=hidden, attention_mask=mask,
                                    past_key_values=None, position_ids=positions)
        return {"attention_mask": causal, "position_ids": positions,
                "position_embeddings": self.t.rotary_emb(hidden, position_ids=positions)}


def layer_stack(transformer: nn.Module) -> _EncoderStack | _DecoderStack:
    """The layer-by-layer view of a Hugging Face base model (a peft wrapper is looked through)."""
    base = transformer.get_base_model() if hasattr(transformer, "get_base_model") else transformer
    if hasattr(base, "embeddings") and hasattr(getattr(base, "encoder", None), "layer"):
        return _EncoderStack(base)
    if hasattr(base, "embed_tokens") and hasattr(base, "layers") and hasattr(base, "rotary_emb"):
        return _DecoderStack(base)
    raise ValueError(f"cannot run {type(base).__name__} layer by layer: expected a BERT-family encoder "
                     "(embeddings + encoder.layer) or a Llama-family decoder (embed_tokens + layers + rotary_emb)")


class ExitHead(nn.Module):
    """Pooled hidden state -> logit correction; the last layer starts at zero (an untrained head adds nothing)."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, pooled: Tensor) -> Tensor:
        return self.net(pooled).squeeze(-1)


class EarlyExitModel(nn.Module):
    """``transformer``: a Hugging Face base model (optionally LoRA-wrapped); ``exit_layers``: 1-based layer
    counts after which a head sits, increasing (e.g. ``[2, 4, 6]`` of MiniLM's 6). Layers after the last exit
    are dropped: nothing reads them."""

    def __init__(self, transformer: nn.Module, exit_layers: list[int], head_hidden: int = 128,
                 dropout: float = 0.1):
        super().__init__()
        self.transformer = transformer
        self.stack = layer_stack(transformer)
        n_layers = len(self.stack.layers)
        if not exit_layers or list(exit_layers) != sorted(set(exit_layers)) or not (
                1 <= exit_layers[0] and exit_layers[-1] <= n_layers):
            raise ValueError(f"exit_layers must be increasing layer counts within 1..{n_layers} (the model's "
                             f"layers), got {list(exit_layers)}")
        del self.stack.layers[exit_layers[-1]:]
        self.exit_layers = list(exit_layers)
        dim = int(self.stack.t.config.hidden_size)
        self.heads = nn.ModuleList(ExitHead(dim, head_hidden, dropout) for _ in exit_layers)

    def _layer(self, index: int, hidden: Tensor, args: dict) -> Tensor:
        out = self.stack.layers[index](hidden, **args)
        return out[0] if isinstance(out, tuple) else out

    def _head_logit(self, k: int, hidden: Tensor, mask: Tensor, base_logit: Tensor | None) -> Tensor:
        logit = self.heads[k](mean_pool(hidden, mask))
        return logit if base_logit is None else logit + base_logit.to(logit.dtype)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None,
                base_logit: Tensor | None = None) -> Tensor:
        """Every head's logit, ``[batch, heads]`` (training and full-depth scoring)."""
        hidden = self.stack.embed(input_ids, token_type_ids)
        args = self.stack.layer_args(hidden, attention_mask)
        logits = []
        for index in range(self.exit_layers[-1]):
            hidden = self._layer(index, hidden, args)
            if index + 1 in self.exit_layers:
                logits.append(self._head_logit(len(logits), hidden, attention_mask, base_logit))
        return torch.stack(logits, dim=1)


@dataclass
class ExitResult:
    probs: np.ndarray  # [n] the answering head's click probability
    exit_head: np.ndarray  # [n] index into ``exit_layers`` of the head that answered
    layers_run: np.ndarray  # [n] transformer layers run for the row


def _keep_rows(rows: Tensor, *tensors: Tensor | None) -> list[Tensor | None]:
    return [None if t is None else t[rows] for t in tensors]


@torch.inference_mode()
def early_exit_predict(model: EarlyExitModel, input_ids: Tensor, attention_mask: Tensor,
                       token_type_ids: Tensor | None = None, base_logit: Tensor | None = None,
                       thresholds: list[float] | None = None) -> ExitResult:
    """Run layer by layer; after exit layer k the rows whose confidence reaches ``thresholds[k]`` answer and
    leave the batch (the last head answers for every row left). ``thresholds``: one per head (the last one is
    not read); None or 1.0 everywhere: full depth."""
    model.eval()
    n_heads = len(model.exit_layers)
    thresholds = list(thresholds) if thresholds is not None else [1.0] * n_heads
    if len(thresholds) != n_heads:
        raise ValueError(f"{len(thresholds)} thresholds for {n_heads} exit heads")
    n = input_ids.shape[0]
    probs = torch.zeros(n, dtype=torch.float32)
    exit_head = torch.full((n,), n_heads - 1, dtype=torch.long)
    active = torch.arange(n, device=input_ids.device)
    mask, types, base = attention_mask, token_type_ids, base_logit
    hidden = model.stack.embed(input_ids, types)
    args = model.stack.layer_args(hidden, mask)
    for index in range(model.exit_layers[-1]):
        hidden = model._layer(index, hidden, args)
        if index + 1 not in model.exit_layers:
            continue
        k = model.exit_layers.index(index + 1)
        p = torch.sigmoid(model._head_logit(k, hidden, mask, base).float())
        out = torch.ones_like(p, dtype=torch.bool) if k == n_heads - 1 else leaves(exit_confidence(p), thresholds[k])
        done = active[out].cpu()
        probs[done], exit_head[done] = p[out].cpu(), k
        if bool(out.all()):
            break
        if bool(out.any()):
            rows = ~out
            active, hidden, mask, types, base = _keep_rows(rows, active, hidden, mask, types, base)
            # trailing columns that are padding for every remaining row need not be computed any more
            width = int(mask.sum(0).nonzero().max()) + 1
            hidden, mask = hidden[:, :width], mask[:, :width]
            types = None if types is None else types[:, :width]
            args = model.stack.layer_args(hidden, mask)
    layers = np.asarray(model.exit_layers)
    heads = exit_head.numpy()
    return ExitResult(probs=probs.numpy(), exit_head=heads, layers_run=layers[heads])
