"""Fitting a small model in process on a planted signal and reading its held-out AUC (shared by the model tests)."""

import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score


def fit_and_auc(model: torch.nn.Module, x: dict[str, torch.Tensor], y: torch.Tensor, n_train: int, epochs: int,
                lr: float = 3e-3, batch_size: int = 128) -> float:
    """Adam on the first ``n_train`` rows for ``epochs`` seeded passes; AUC on the rest."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n_train, generator=torch.Generator().manual_seed(epoch))
        for start in range(0, n_train, batch_size):
            idx = order[start:start + batch_size]
            loss = F.binary_cross_entropy_with_logits(model({k: v[idx] for k, v in x.items()}).logit, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        logit = model({k: v[n_train:] for k, v in x.items()}).logit
    return float(roc_auc_score(y[n_train:].numpy(), logit.numpy()))


def history_feature_map():
    """A tiny feature map with a user, an item and a 4-long history of items with labels (the artifact tests')."""
    from llmctr.data.feature_map import FeatureMap, FieldMap

    return FeatureMap(dataset="t", fields=[
        FieldMap(name="user", kind="categorical", description="", source="user", vocab=list("abcde")),
        FieldMap(name="item", kind="categorical", description="", source="item", vocab=list("fghijklm")),
        FieldMap(name="hist", kind="sequence", description="", source="hist", of="item", max_len=4,
                 with_label=True)])
