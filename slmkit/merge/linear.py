"""Linear merge: a weighted average of the models' weights (model soups, Wortsman et al. 2022,
arXiv 2203.05482). No base model: every listed model is an input with its own ``weight``.

``Σ w_i θ_i`` (divided by ``Σ w_i`` when ``normalize``), computed in float32 (float64 for float64 inputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from slmkit.merge.method import WEIGHT, MergeMethod, Param

if TYPE_CHECKING:
    from torch import Tensor


def linear(base: Tensor | None, tensors: Sequence[Tensor], *, weight: Sequence[float],
           normalize: bool = True) -> Tensor:
    """Weighted sum of ``tensors`` (``base`` is unused: a linear merge has no base)."""
    import torch

    dtype = torch.float64 if tensors[0].dtype == torch.float64 else torch.float32
    total = torch.zeros_like(tensors[0], dtype=dtype)
    for tensor, w in zip(tensors, weight):
        total.add_(tensor.to(dtype), alpha=w)
    if normalize:
        total.div_(sum(weight))
    return total


def _check(shared: dict[str, Any], per_model: list[dict[str, Any]]) -> str | None:
    if shared["normalize"] and abs(sum(p["weight"] for p in per_model)) < 1e-8:
        return "the weights sum to 0, so normalize would divide by zero"
    return None


METHOD = MergeMethod(
    name="linear", function=linear, uses_base=False,
    per_model={"weight": WEIGHT},
    shared={"normalize": Param(bool, True, doc="divide by the sum of the weights")},
    reference="https://arxiv.org/abs/2203.05482", check=_check,
)
