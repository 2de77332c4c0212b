"""FuxiCTR side of the zoo benchmark: DeepFM, FM, FwFM, FmFM, DCNv2, AutoInt.

Each class follows reczoo/FuxiCTR ``model_zoo/<Model>/src/<Model>.py`` (same layers, same forward), rewritten from
the layers the PyPI package ships (it does not ship the zoo). Runs inside the FuxiCTR venv only (imported by
``runner.py`` beside it); never imports llmctr.
"""

from __future__ import annotations

import torch
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
from torch import nn


def finish(model: BaseModel, kwargs: dict, learning_rate: float) -> None:
    """The end of every model_zoo ``__init__``: optimizer and loss, FuxiCTR's re-initialisation, device."""
    model.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
    model.reset_parameters()
    model.model_to_device()


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
        finish(self, kwargs, learning_rate)

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
        finish(self, kwargs, learning_rate)

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
        finish(self, kwargs, learning_rate)

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
        finish(self, kwargs, learning_rate)

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
        finish(self, kwargs, learning_rate)

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
        finish(self, kwargs, learning_rate)

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        emb = self.embedding_layer(X)
        y = self.fc(torch.flatten(self.self_attention(emb), start_dim=1))
        if self.dnn is not None:
            y = y + self.dnn(emb.flatten(start_dim=1))
        if self.lr_layer is not None:
            y = y + self.lr_layer(X)
        return {"y_pred": self.output_activation(y)}
