"""Model Stock (Jang et al. 2024, "Model Stock: All we need is just a few fine-tuned models",
arXiv 2403.19522): interpolate between the average of k ≥ 2 fine-tuned models and their common base.

With ``cos θ`` the mean pairwise cosine between the task vectors (of the whole tensor, or of each row when
``filter_wise``), ``t = k·cos θ / (1 + (k−1)·cos θ)`` and the merge is ``t·mean(θ_i) + (1−t)·θ_base``
(Eq. 2 of the paper). Where ``1 + (k−1)·cos θ`` vanishes there is no finite estimate and the base is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from slmkit.merge.method import MergeMethod, Param

if TYPE_CHECKING:
    from torch import Tensor


def model_stock(base: Tensor, tensors: Sequence[Tensor], *, filter_wise: bool = False) -> Tensor:
    """Model Stock's geometric interpolation between the models' mean and the base."""
    import torch

    shape = base.shape
    if filter_wise:
        w0 = base.unsqueeze(0) if base.dim() == 1 else base
        ws = [w.unsqueeze(0) if w.dim() == 1 else w for w in tensors]
    else:
        w0, ws = base.reshape(-1), [w.reshape(-1) for w in tensors]
    offsets = [w - w0 for w in ws]
    cosines = []
    for i, a in enumerate(offsets):
        for b in offsets[i + 1:]:
            norms = (torch.norm(a, dim=-1) * torch.norm(b, dim=-1)).clamp(min=1e-6)
            cosines.append(((a * b).sum(dim=-1) / norms).clamp(-1, 1))
    cos = torch.stack(cosines).mean(dim=0).unsqueeze(-1)
    k = len(ws)
    denominator = 1 + (k - 1) * cos
    singular = denominator.abs() < 1e-6
    t = torch.where(singular, torch.zeros_like(cos), k * cos / torch.where(singular, 1.0, denominator))
    average = sum(ws) / k
    return (t * average + (1 - t) * w0).reshape(shape)


METHOD = MergeMethod(
    name="model_stock", function=model_stock, uses_base=True, min_models=2,
    shared={"filter_wise": Param(bool, False, doc="one interpolation ratio per row instead of per tensor")},
    reference="https://arxiv.org/abs/2403.19522",
)
