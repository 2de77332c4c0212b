"""FuxiCTR side of ``benchmarks/zoo_vs_fuxictr.py``: runs INSIDE the FuxiCTR venv (benchmarks/.venv-fuxictr).

Imports only fuxictr / torch / numpy / pandas / pyarrow / sklearn (never llmctr). Builds one FuxiCTR model from
the layers the PyPI package ships (``BaseModel``, ``FeatureEmbedding``, ``FactorizationMachine``, ``MLP_Block``,
``CrossNetV2``, ``InnerProductInteraction``, ``LogisticRegression``, ``ScaledDotProductAttention``), composed the
way reczoo/FuxiCTR's ``model_zoo/<Model>/src/<Model>.py`` composes them (the pip package does not ship the zoo),
trains it with FuxiCTR's own ``BaseModel.fit`` on our encoded parquet splits, and prints ONE JSON line (the last
line of stdout) with test AUC / logloss, per-epoch optimisation-step throughput and wall times.

Feeds (``--feed``):
  fuxictr  FuxiCTR's own parquet pipeline: ``RankDataLoader(data_format="parquet")`` → ``ParquetDataLoader``
           (Ray Data ``iter_torch_batches``, block-order randomisation + local shuffle buffer), as shipped.
  memory   the same tensors held in memory and batched by a seeded permutation per epoch (what our
           in-memory training feed does), so the two sides differ only in model code and train step.

Throughput has the same definition as ours: per epoch, training samples / seconds spent in the epoch's batch
loop (fetching batches + forward/backward/step), validation excluded; averaged over epochs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections import OrderedDict

import numpy as np
import pandas as pd
import torch
from fuxictr.features import FeatureMap
from fuxictr.pytorch.layers import (
    CrossNetV2,
    FactorizationMachine,
    FeatureEmbedding,
    InnerProductInteraction,
    LogisticRegression,
    MLP_Block,
    ScaledDotProductAttention,
)
from fuxictr.pytorch.models import BaseModel
from fuxictr.pytorch.torch_utils import seed_everything
from torch import nn

LABEL = "label"


# --------------------------------------------------------------------------------------------------------------
# Models: each follows reczoo/FuxiCTR model_zoo/<Model>/src/<Model>.py (same layers, same forward), rewritten here.
# --------------------------------------------------------------------------------------------------------------

class DeepFM(BaseModel):
    """model_zoo/DeepFM: LR + FM (FactorizationMachine) + MLP_Block(..., output_dim=1)."""

    def __init__(self, feature_map, model_id="DeepFM", gpu=-1, learning_rate=1e-3, embedding_dim=10,
                 hidden_units=(64, 64, 64), hidden_activations="ReLU", net_dropout=0, batch_norm=False,
                 embedding_regularizer=None, net_regularizer=None, **kwargs):
        super().__init__(feature_map, model_id=model_id, gpu=gpu, embedding_regularizer=embedding_regularizer,
                         net_regularizer=net_regularizer, **kwargs)
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        self.fm = FactorizationMachine(feature_map)
        self.mlp = MLP_Block(input_dim=feature_map.sum_emb_out_dim(), output_dim=1, hidden_units=list(hidden_units),
                             hidden_activations=hidden_activations, output_activation=None,
                             dropout_rates=net_dropout, batch_norm=batch_norm)
        self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
        self.reset_parameters()
        self.model_to_device()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        emb = self.embedding_layer(X)
        y = self.fm(X, emb) + self.mlp(emb.flatten(start_dim=1))
        return {"y_pred": self.output_activation(y)}


class FM(BaseModel):
    """model_zoo/FM: FactorizationMachine (LR with bias + sum of pairwise inner products)."""

    def __init__(self, feature_map, model_id="FM", gpu=-1, learning_rate=1e-3, embedding_dim=10, regularizer=None,
                 **kwargs):
        super().__init__(feature_map, model_id=model_id, gpu=gpu, embedding_regularizer=regularizer,
                         net_regularizer=regularizer, **kwargs)
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        self.fm = FactorizationMachine(feature_map)
        self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
        self.reset_parameters()
        self.model_to_device()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        return {"y_pred": self.output_activation(self.fm(X, self.embedding_layer(X)))}


class FwFM(BaseModel):
    """model_zoo/FwFM: Linear(pairwise inner products → 1, with bias) + a linear term (``linear_type``)."""

    def __init__(self, feature_map, model_id="FwFM", gpu=-1, learning_rate=1e-3, embedding_dim=10, regularizer=None,
                 linear_type="FiLV", **kwargs):
        super().__init__(feature_map, model_id=model_id, gpu=gpu, embedding_regularizer=regularizer,
                         net_regularizer=regularizer, **kwargs)
        num_fields = feature_map.num_fields
        self.interaction_weight = nn.Linear(num_fields * (num_fields - 1) // 2, 1)
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        self.inner_product_layer = InnerProductInteraction(num_fields, output="inner_product")
        self._linear_type = linear_type
        if linear_type == "LW":
            self.linear_weight_layer = FeatureEmbedding(feature_map, 1, use_pretrain=False)
        elif linear_type == "FeLV":
            self.linear_weight_layer = FeatureEmbedding(feature_map, embedding_dim)
        elif linear_type == "FiLV":
            self.linear_weight_layer = nn.Linear(num_fields * embedding_dim, 1, bias=False)
        else:
            raise NotImplementedError(f"linear_type={linear_type} is not supported.")
        self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
        self.reset_parameters()
        self.model_to_device()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        emb = self.embedding_layer(X)
        y = self.interaction_weight(self.inner_product_layer(emb))  # the bias lives here
        if self._linear_type == "LW":
            y = y + self.linear_weight_layer(X).sum(dim=1)
        elif self._linear_type == "FeLV":
            y = y + (emb * self.linear_weight_layer(X)).sum((1, 2)).view(-1, 1)
        else:
            y = y + self.linear_weight_layer(emb.flatten(start_dim=1))
        return {"y_pred": self.output_activation(y)}


class FmFM(BaseModel):
    """model_zoo/FmFM: <e_i M_ij, e_j> over field pairs (matrixed) or <e_i ⊙ v_ij, e_j> (vectorized) + LR."""

    def __init__(self, feature_map, model_id="FmFM", gpu=-1, learning_rate=1e-3, embedding_dim=10, regularizer=None,
                 field_interaction_type="matrixed", **kwargs):
        super().__init__(feature_map, model_id=model_id, gpu=gpu, embedding_regularizer=regularizer,
                         net_regularizer=regularizer, **kwargs)
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        num_fields = feature_map.num_fields
        pairs = num_fields * (num_fields - 1) // 2
        self.field_interaction_type = field_interaction_type
        if field_interaction_type == "vectorized":
            self.interaction_weight = nn.Parameter(torch.Tensor(pairs, embedding_dim))
        elif field_interaction_type == "matrixed":
            self.interaction_weight = nn.Parameter(torch.Tensor(pairs, embedding_dim, embedding_dim))
        else:
            raise ValueError(f"field_interaction_type={field_interaction_type} is not supported.")
        nn.init.xavier_normal_(self.interaction_weight)
        self.lr_layer = LogisticRegression(feature_map)
        self.triu_index = torch.triu_indices(num_fields, num_fields, offset=1).to(self.device)
        self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
        self.reset_parameters()
        self.model_to_device()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        emb = self.embedding_layer(X)
        left = torch.index_select(emb, 1, self.triu_index[0])
        right = torch.index_select(emb, 1, self.triu_index[1])
        if self.field_interaction_type == "vectorized":
            left = left * self.interaction_weight
        else:
            left = torch.matmul(left.unsqueeze(2), self.interaction_weight).squeeze(2)
        y = (left * right).sum(dim=-1).sum(dim=-1, keepdim=True) + self.lr_layer(X)
        return {"y_pred": self.output_activation(y)}


class DCNv2(BaseModel):
    """model_zoo/DCNv2: CrossNetV2 over the flat embeddings + DNN (parallel/stacked/...), Linear(final → 1)."""

    def __init__(self, feature_map, model_id="DCNv2", gpu=-1, model_structure="parallel", learning_rate=1e-3,
                 embedding_dim=10, stacked_dnn_hidden_units=(), parallel_dnn_hidden_units=(),
                 dnn_activations="ReLU", num_cross_layers=3, net_dropout=0, batch_norm=False,
                 embedding_regularizer=None, net_regularizer=None, **kwargs):
        super().__init__(feature_map, model_id=model_id, gpu=gpu, embedding_regularizer=embedding_regularizer,
                         net_regularizer=net_regularizer, **kwargs)
        assert model_structure in ("crossnet_only", "stacked", "parallel", "stacked_parallel"), model_structure
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        input_dim = feature_map.sum_emb_out_dim()
        self.crossnet = CrossNetV2(input_dim, num_cross_layers)
        self.model_structure = model_structure
        final_dim = input_dim
        if model_structure in ("stacked", "stacked_parallel"):
            self.stacked_dnn = MLP_Block(input_dim=input_dim, output_dim=None,
                                         hidden_units=list(stacked_dnn_hidden_units),
                                         hidden_activations=dnn_activations, output_activation=None,
                                         dropout_rates=net_dropout, batch_norm=batch_norm)
            final_dim = stacked_dnn_hidden_units[-1]
        if model_structure in ("parallel", "stacked_parallel"):
            self.parallel_dnn = MLP_Block(input_dim=input_dim, output_dim=None,
                                          hidden_units=list(parallel_dnn_hidden_units),
                                          hidden_activations=dnn_activations, output_activation=None,
                                          dropout_rates=net_dropout, batch_norm=batch_norm)
            final_dim = input_dim + parallel_dnn_hidden_units[-1]
        if model_structure == "stacked_parallel":
            final_dim = stacked_dnn_hidden_units[-1] + parallel_dnn_hidden_units[-1]
        self.fc = nn.Linear(final_dim, 1)
        self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
        self.reset_parameters()
        self.model_to_device()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        emb = self.embedding_layer(X, flatten_emb=True)
        cross = self.crossnet(emb)
        if self.model_structure == "crossnet_only":
            out = cross
        elif self.model_structure == "stacked":
            out = self.stacked_dnn(cross)
        elif self.model_structure == "parallel":
            out = torch.cat([cross, self.parallel_dnn(emb)], dim=-1)
        else:
            out = torch.cat([self.stacked_dnn(cross), self.parallel_dnn(emb)], dim=-1)
        return {"y_pred": self.output_activation(self.fc(out))}


class MultiHeadSelfAttention(nn.Module):
    """model_zoo/AutoInt's interacting layer (not in the pip package): separate W_q/W_k/W_v, optional W_res when
    the width changes, ScaledDotProductAttention (unscaled unless use_scale), residual, [LayerNorm], ReLU."""

    def __init__(self, input_dim, attention_dim=None, num_heads=1, dropout_rate=0.0, use_residual=True,
                 use_scale=False, layer_norm=False):
        super().__init__()
        attention_dim = attention_dim or input_dim
        assert attention_dim % num_heads == 0, (attention_dim, num_heads)
        self.head_dim = attention_dim // num_heads
        self.num_heads = num_heads
        self.use_residual = use_residual
        self.scale = self.head_dim ** 0.5 if use_scale else None
        self.W_q = nn.Linear(input_dim, attention_dim, bias=False)
        self.W_k = nn.Linear(input_dim, attention_dim, bias=False)
        self.W_v = nn.Linear(input_dim, attention_dim, bias=False)
        self.W_res = (nn.Linear(input_dim, attention_dim, bias=False)
                      if use_residual and input_dim != attention_dim else None)
        self.dot_attention = ScaledDotProductAttention(dropout_rate)
        self.layer_norm = nn.LayerNorm(attention_dim) if layer_norm else None

    def forward(self, X):
        b = X.size(0)
        q, k, v = (w(X).view(b, -1, self.num_heads, self.head_dim).transpose(1, 2)
                   for w in (self.W_q, self.W_k, self.W_v))
        out, _ = self.dot_attention(q, k, v, scale=self.scale)
        out = out.transpose(1, 2).contiguous().view(b, -1, self.num_heads * self.head_dim)
        if self.use_residual:
            out = out + (self.W_res(X) if self.W_res is not None else X)
        if self.layer_norm is not None:
            out = self.layer_norm(out)
        return out.relu()


class AutoInt(BaseModel):
    """model_zoo/AutoInt: stacked self-attention → Linear(F·d_att → 1), plus DNN(flat emb → 1) (AutoInt+)."""

    def __init__(self, feature_map, model_id="AutoInt", gpu=-1, learning_rate=1e-3, embedding_dim=10,
                 dnn_hidden_units=(64, 64, 64), dnn_activations="ReLU", attention_layers=2, num_heads=1,
                 attention_dim=8, net_dropout=0, batch_norm=False, layer_norm=False, use_scale=False,
                 use_wide=False, use_residual=True, embedding_regularizer=None, net_regularizer=None, **kwargs):
        super().__init__(feature_map, model_id=model_id, gpu=gpu, embedding_regularizer=embedding_regularizer,
                         net_regularizer=net_regularizer, **kwargs)
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        self.lr_layer = LogisticRegression(feature_map, use_bias=False) if use_wide else None
        self.dnn = (MLP_Block(input_dim=feature_map.sum_emb_out_dim(), output_dim=1,
                              hidden_units=list(dnn_hidden_units), hidden_activations=dnn_activations,
                              output_activation=None, dropout_rates=net_dropout, batch_norm=batch_norm)
                    if dnn_hidden_units else None)
        self.self_attention = nn.Sequential(*[
            MultiHeadSelfAttention(embedding_dim if i == 0 else attention_dim, attention_dim=attention_dim,
                                   num_heads=num_heads, dropout_rate=net_dropout, use_residual=use_residual,
                                   use_scale=use_scale, layer_norm=layer_norm)
            for i in range(attention_layers)])
        self.fc = nn.Linear(feature_map.num_fields * attention_dim, 1)
        self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
        self.reset_parameters()
        self.model_to_device()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        emb = self.embedding_layer(X)
        y = self.fc(torch.flatten(self.self_attention(emb), start_dim=1))
        if self.dnn is not None:
            y = y + self.dnn(emb.flatten(start_dim=1))
        if self.lr_layer is not None:
            y = y + self.lr_layer(X)
        return {"y_pred": self.output_activation(y)}


class FeatureSelection(nn.Module):
    """model_zoo/FinalMLP: per-stream gates 2·sigmoid(MLP(context)) over the flat embeddings."""

    def __init__(self, feature_map, feature_dim, embedding_dim, fs_hidden_units=(), fs1_context=(),
                 fs2_context=()):
        super().__init__()
        self.fs1_context, self.fs2_context = list(fs1_context), list(fs2_context)
        if self.fs1_context:
            self.fs1_ctx_emb = FeatureEmbedding(feature_map, embedding_dim, required_feature_columns=fs1_context)
        else:
            self.fs1_ctx_bias = nn.Parameter(torch.zeros(1, embedding_dim))
        if self.fs2_context:
            self.fs2_ctx_emb = FeatureEmbedding(feature_map, embedding_dim, required_feature_columns=fs2_context)
        else:
            self.fs2_ctx_bias = nn.Parameter(torch.zeros(1, embedding_dim))
        self.fs1_gate = MLP_Block(input_dim=embedding_dim * max(1, len(self.fs1_context)), output_dim=feature_dim,
                                  hidden_units=list(fs_hidden_units), hidden_activations="ReLU",
                                  output_activation="Sigmoid", batch_norm=False)
        self.fs2_gate = MLP_Block(input_dim=embedding_dim * max(1, len(self.fs2_context)), output_dim=feature_dim,
                                  hidden_units=list(fs_hidden_units), hidden_activations="ReLU",
                                  output_activation="Sigmoid", batch_norm=False)

    def forward(self, X, flat_emb):
        ctx1 = (self.fs1_ctx_emb(X).flatten(start_dim=1) if self.fs1_context
                else self.fs1_ctx_bias.repeat(flat_emb.size(0), 1))
        ctx2 = (self.fs2_ctx_emb(X).flatten(start_dim=1) if self.fs2_context
                else self.fs2_ctx_bias.repeat(flat_emb.size(0), 1))
        return flat_emb * (self.fs1_gate(ctx1) * 2), flat_emb * (self.fs2_gate(ctx2) * 2)


class InteractionAggregation(nn.Module):
    """model_zoo/FinalMLP: w_x·x + w_y·y + sum_heads x_h^T W_h y_h."""

    def __init__(self, x_dim, y_dim, output_dim=1, num_heads=1):
        super().__init__()
        assert x_dim % num_heads == 0 and y_dim % num_heads == 0, "Input dim must be divisible by num_heads!"
        self.num_heads, self.output_dim = num_heads, output_dim
        self.head_x_dim, self.head_y_dim = x_dim // num_heads, y_dim // num_heads
        self.w_x = nn.Linear(x_dim, output_dim)
        self.w_y = nn.Linear(y_dim, output_dim)
        self.w_xy = nn.Parameter(torch.Tensor(num_heads * self.head_x_dim * self.head_y_dim, output_dim))
        nn.init.xavier_normal_(self.w_xy)

    def forward(self, x, y):
        out = self.w_x(x) + self.w_y(y)
        hx = x.view(-1, self.num_heads, self.head_x_dim)
        hy = y.view(-1, self.num_heads, self.head_y_dim)
        xy = torch.matmul(torch.matmul(hx.unsqueeze(2), self.w_xy.view(self.num_heads, self.head_x_dim, -1))
                          .view(-1, self.num_heads, self.output_dim, self.head_y_dim),
                          hy.unsqueeze(-1)).squeeze(-1)
        return out + xy.sum(dim=1)


class FinalMLP(BaseModel):
    """model_zoo/FinalMLP: two MLP streams over feature-selected inputs, fused by InteractionAggregation."""

    def __init__(self, feature_map, model_id="FinalMLP", gpu=-1, learning_rate=1e-3, embedding_dim=10,
                 mlp1_hidden_units=(64, 64, 64), mlp1_hidden_activations="ReLU", mlp1_dropout=0,
                 mlp1_batch_norm=False, mlp2_hidden_units=(64, 64, 64), mlp2_hidden_activations="ReLU",
                 mlp2_dropout=0, mlp2_batch_norm=False, use_fs=True, fs_hidden_units=(64,), fs1_context=(),
                 fs2_context=(), num_heads=1, embedding_regularizer=None, net_regularizer=None, **kwargs):
        super().__init__(feature_map, model_id=model_id, gpu=gpu, embedding_regularizer=embedding_regularizer,
                         net_regularizer=net_regularizer, **kwargs)
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        feature_dim = embedding_dim * feature_map.num_fields
        self.mlp1 = MLP_Block(input_dim=feature_dim, output_dim=None, hidden_units=list(mlp1_hidden_units),
                              hidden_activations=mlp1_hidden_activations, output_activation=None,
                              dropout_rates=mlp1_dropout, batch_norm=mlp1_batch_norm)
        self.mlp2 = MLP_Block(input_dim=feature_dim, output_dim=None, hidden_units=list(mlp2_hidden_units),
                              hidden_activations=mlp2_hidden_activations, output_activation=None,
                              dropout_rates=mlp2_dropout, batch_norm=mlp2_batch_norm)
        self.use_fs = use_fs
        if use_fs:
            self.fs_module = FeatureSelection(feature_map, feature_dim, embedding_dim, fs_hidden_units,
                                              fs1_context, fs2_context)
        self.fusion_module = InteractionAggregation(mlp1_hidden_units[-1], mlp2_hidden_units[-1], output_dim=1,
                                                    num_heads=num_heads)
        self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
        self.reset_parameters()
        self.model_to_device()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        flat = self.embedding_layer(X).flatten(start_dim=1)
        f1, f2 = self.fs_module(X, flat) if self.use_fs else (flat, flat)
        return {"y_pred": self.output_activation(self.fusion_module(self.mlp1(f1), self.mlp2(f2)))}


class FactorizationMachineBlock(nn.Module):
    """model_zoo/WuKong: X Xᵀ Y with a learnt projection Y [F, k] → flat [B, F·k]."""

    def __init__(self, num_features, embedding_dim, project_dim):
        super().__init__()
        self.num_features, self.embedding_dim = num_features, embedding_dim
        self.projection_matrix = nn.Parameter(torch.randn(num_features, project_dim))

    def forward(self, x):
        b = x.size(0)
        x_fm = x.view(b, self.num_features, self.embedding_dim)
        projected = torch.matmul(x_fm.transpose(1, 2), self.projection_matrix)
        return torch.matmul(x_fm, projected).view(b, -1)


class FMB(nn.Module):
    def __init__(self, num_features, embedding_dim, fmb_units, fmb_dim, project_dim):
        super().__init__()
        self.fm_block = FactorizationMachineBlock(num_features, embedding_dim, project_dim)
        self.layer_norm = nn.LayerNorm(num_features * project_dim)
        dims = [num_features * project_dim, *fmb_units]
        layers = []
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(d_in, d_out), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], fmb_dim))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x):
        return torch.relu(self.mlp(self.layer_norm(self.fm_block(x))))


class LinearCompressionBlock(nn.Module):
    def __init__(self, num_features, embedding_dim, compressed_dim, dropout_rate):
        super().__init__()
        self.linear = nn.Linear(num_features * embedding_dim, compressed_dim)
        self.dropout = nn.Dropout(p=dropout_rate)

    def forward(self, x):
        return self.dropout(self.linear(x.view(x.size(0), -1)))


class WuKongLayer(nn.Module):
    def __init__(self, num_features, embedding_dim, project_dim, fmb_units, fmb_dim, compressed_dim, dropout_rate):
        super().__init__()
        self.fmb = FMB(num_features, embedding_dim, fmb_units, fmb_dim, project_dim)
        self.lcb = LinearCompressionBlock(num_features, embedding_dim, compressed_dim, dropout_rate)
        self.layer_norm = nn.LayerNorm(num_features * embedding_dim)
        self.transform = nn.Linear(fmb_dim + compressed_dim, num_features * embedding_dim)

    def forward(self, x):
        out = self.transform(torch.cat([self.fmb(x), self.lcb(x)], dim=1))
        return self.layer_norm(out + x.view(x.size(0), -1))


class WuKong(BaseModel):
    """model_zoo/WuKong: num_layers × (FMB ⊕ LCB → Linear → add & LayerNorm), then MLP_Block(..., 1)."""

    def __init__(self, feature_map, model_id="WuKong", gpu=-1, learning_rate=1e-3, embedding_dim=64, num_layers=3,
                 compression_dim=40, mlp_hidden_units=(32, 32), fmb_units=(32, 32), fmb_dim=40, project_dim=8,
                 dropout_rate=0.2, embedding_regularizer=None, net_regularizer=None, **kwargs):
        super().__init__(feature_map, model_id=model_id, gpu=gpu, embedding_regularizer=embedding_regularizer,
                         net_regularizer=net_regularizer, **kwargs)
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        self.interaction_layers = nn.ModuleList([
            WuKongLayer(feature_map.num_fields, embedding_dim, project_dim, list(fmb_units), fmb_dim,
                        compression_dim, dropout_rate) for _ in range(num_layers)])
        self.final_mlp = MLP_Block(input_dim=feature_map.num_fields * embedding_dim, output_dim=1,
                                   hidden_units=list(mlp_hidden_units), hidden_activations="relu",
                                   output_activation=None)
        self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
        self.reset_parameters()
        self.model_to_device()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        emb = self.embedding_layer(X)
        for layer in self.interaction_layers:
            emb = layer(emb)
        return {"y_pred": self.output_activation(self.final_mlp(emb))}


MODELS = {cls.__name__: cls for cls in (DeepFM, FM, FwFM, FmFM, DCNv2, AutoInt, FinalMLP, WuKong)}


# --------------------------------------------------------------------------------------------------------------
# Timing: wrap BaseModel's own train_epoch / eval_step without changing what they do.
# --------------------------------------------------------------------------------------------------------------

class TimedMixin:
    """Per epoch: seconds in the batch loop minus seconds in validation (FuxiCTR validates from inside
    ``train_epoch``, after the epoch's last step), samples seen, validation AUC, which epoch was best."""

    def _timing_init(self):
        self.epoch_log = []
        self._eval_seconds = 0.0
        self._samples = 0

    def train_step(self, batch_data):
        self._samples += len(batch_data[LABEL])
        return super().train_step(batch_data)

    def train_epoch(self, data_generator):
        self._eval_seconds, self._samples = 0.0, 0
        self._last_valid = None
        t0 = time.perf_counter()
        super().train_epoch(data_generator)
        total = time.perf_counter() - t0
        seconds = total - self._eval_seconds
        self.epoch_log.append({"epoch": self._epoch_index + 1, "samples": self._samples,
                               "train_seconds": seconds, "samples_per_s": self._samples / seconds,
                               "eval_seconds": self._eval_seconds, **(self._last_valid or {})})

    def eval_step(self):
        t0 = time.perf_counter()
        super().eval_step()
        self._eval_seconds += time.perf_counter() - t0

    def checkpoint_and_earlystop(self, logs, min_delta=1e-6):
        before = self._best_metric
        super().checkpoint_and_earlystop(logs, min_delta)
        # eval_step asks only for the monitored metric (AUC), as FuxiCTR does
        self._last_valid = {"valid_auc": float(logs["AUC"]), "improved": bool(self._best_metric != before)}


# --------------------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------------------

def build_feature_map(our_map: dict, work_dir: str, embedding_dim: int) -> FeatureMap:
    """A FuxiCTR FeatureMap over our encoded columns: every field categorical, vocab sizes from our map
    (ids 0 pad, 1 OOV, 2.. vocabulary), padding_idx 0 as FuxiCTR's own preprocessing sets for categoricals."""
    features = [{name: {"source": "", "type": "categorical", "vocab_size": int(our_map["vocab_sizes"][name]),
                        "padding_idx": 0}} for name in our_map["field_order"]]
    spec = OrderedDict(dataset_id=our_map["dataset"], num_fields=len(features), total_features=0, input_length=0,
                       labels=[our_map.get("label", LABEL)], features=features)
    path = os.path.join(work_dir, "fuxictr_feature_map.json")
    with open(path, "w") as fh:
        json.dump(spec, fh, indent=1)
    fmap = FeatureMap(our_map["dataset"], work_dir)
    fmap.load(path, params={"embedding_dim": embedding_dim})
    return fmap


class MemoryLoader:
    """The split's columns as int64/float32 tensors in memory; batches by a seeded permutation per epoch."""

    def __init__(self, path: str, columns: list[str], batch_size: int, shuffle: bool, seed: int):
        frame = pd.read_parquet(path, columns=columns)
        self.data = {c: torch.from_numpy(np.array(frame[c].to_numpy(), copy=True)) for c in columns}
        self.num_samples = len(frame)
        self.batch_size, self.shuffle, self.seed, self.epoch = batch_size, shuffle, seed, 0

    def __len__(self):
        return -(-self.num_samples // self.batch_size)

    def __iter__(self):
        n = self.num_samples
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 1000 + self.epoch * 31))
            self.epoch += 1
        else:
            order = torch.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            yield {k: v[idx] for k, v in self.data.items()}


def make_loaders(feed: str, fmap: FeatureMap, data_dir: str, batch_size: int, seed: int):
    splits = [os.path.join(data_dir, s) for s in ("train", "valid", "test")]
    if feed == "memory":
        cols = list(fmap.features) + fmap.labels
        return tuple(MemoryLoader(p, cols, batch_size, i == 0, seed) for i, p in enumerate(splits))
    from fuxictr.pytorch.dataloaders import RankDataLoader

    return RankDataLoader(fmap, stage="both", train_data=splits[0], valid_data=splits[1], test_data=splits[2],
                          batch_size=batch_size, shuffle=True, data_format="parquet")


# --------------------------------------------------------------------------------------------------------------

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="prepared dataset: train/ valid/ test/ parquet + feature_map.json")
    p.add_argument("--model", required=True, choices=sorted(MODELS))
    p.add_argument("--params", default="{}", help="JSON: the FuxiCTR model's keyword arguments")
    p.add_argument("--embedding-dim", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--feed", choices=("fuxictr", "memory"), default="fuxictr")
    p.add_argument("--max-gradient-norm", type=float, default=10.0, help="BaseModel.fit's default is 10")
    p.add_argument("--reduce-lr-on-plateau", action="store_true",
                   help="FuxiCTR's default; off here because our trainer keeps the learning rate constant")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    t_process = time.perf_counter()
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)

    with open(os.path.join(args.data_dir, "feature_map.json")) as fh:
        our_map = json.load(fh)
    with tempfile.TemporaryDirectory(prefix="fuxictr_") as work:
        fmap = build_feature_map(our_map, work, args.embedding_dim)
        t0 = time.perf_counter()
        if args.feed == "fuxictr":
            import ray

            # A private local Ray for FuxiCTR's loader (what ParquetDataLoader would start itself), never joining a
            # cluster that happens to run on the machine; its start-up is kept out of the wall time, as on our side.
            ray.init(address="local", include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        t_ray = time.perf_counter() - t0
        t0 = time.perf_counter()
        train_gen, valid_gen, test_gen = make_loaders(args.feed, fmap, args.data_dir, args.batch_size, args.seed)
        t_loaders = time.perf_counter() - t0
        cls = type(f"Timed{args.model}", (TimedMixin, MODELS[args.model]), {})
        model = cls(fmap, model_id=args.model, gpu=-1, learning_rate=args.lr, embedding_dim=args.embedding_dim,
                    optimizer="adam", loss="binary_crossentropy", metrics=["AUC", "logloss"], monitor="AUC",
                    monitor_mode="max", early_stop_patience=args.patience, verbose=0, model_root=work,
                    reduce_lr_on_plateau=args.reduce_lr_on_plateau, **json.loads(args.params))
        os.makedirs(model.model_dir, exist_ok=True)
        model._timing_init()
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        t0 = time.perf_counter()
        model.fit(train_gen, epochs=args.epochs, validation_data=valid_gen, max_gradient_norm=args.max_gradient_norm)
        test = model.evaluate(test_gen, metrics=["AUC", "logloss"])
        t_fit = time.perf_counter() - t0

    log = model.epoch_log
    best = max((e for e in log if "valid_auc" in e), key=lambda e: e["valid_auc"])
    result = {
        "model": args.model, "feed": args.feed, "test_auc": float(test["AUC"]), "test_logloss": float(test["logloss"]),
        "train_samples_per_s": sum(e["samples_per_s"] for e in log) / len(log),
        "fit_wall_seconds": t_fit, "loaders_seconds": t_loaders, "ray_init_seconds": t_ray,
        "wall_seconds": t_fit + t_loaders, "process_seconds": time.perf_counter() - t_process,
        "epochs_run": len(log), "best_epoch": best["epoch"], "valid_auc": best["valid_auc"],
        "params": params, "threads": torch.get_num_threads(), "history": log,
        "versions": {"fuxictr": _version("fuxictr"), "torch": torch.__version__},
    }
    print(json.dumps(result), flush=True)


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    main()
