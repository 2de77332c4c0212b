"""FuxiCTR side of the zoo benchmark: FinalMLP and WuKong (with their blocks).

Each class follows reczoo/FuxiCTR ``model_zoo/<Model>/src/<Model>.py`` (same layers, same forward), rewritten from
the layers the PyPI package ships (it does not ship the zoo). Runs inside the FuxiCTR venv only (imported by
``runner.py`` beside it); never imports llmctr.
"""

from __future__ import annotations

import torch
from fuxictr.pytorch.layers import FeatureEmbedding, MLP_Block
from fuxictr.pytorch.models import BaseModel
from torch import nn
from zoo_classic import finish


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
        finish(self, kwargs, learning_rate)

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
        finish(self, kwargs, learning_rate)

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        emb = self.embedding_layer(X)
        for layer in self.interaction_layers:
            emb = layer(emb)
        return {"y_pred": self.output_activation(self.final_mlp(emb))}
