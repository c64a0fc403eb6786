"""Task arithmetic (Ilharco et al. 2023, arXiv 2212.04089) and the task-vector core that TIES, DARE and
BreadCrumbs share.

A task vector is ``delta_i = model_i − base``. The merge is ``base + lambda · Σ_i w_i·delta_i / Z`` where
``Z = Σ_i w_i`` if ``normalize`` (else 1). With sign consensus (TIES, arXiv 2306.01708, "elect" and
"disjoint merge"), each entry keeps only the deltas whose sign agrees with the sign of the weighted sum
``Σ_i w_i·delta_i`` (ties count as positive), and ``Z`` sums the weights of the agreeing deltas only.
Pure functions on tensors; nothing is read or written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from slmkit.merge.method import LAMBDA, WEIGHT, MergeMethod, Param

if TYPE_CHECKING:
    from torch import Tensor


def combine(base: Tensor, deltas: Sequence[Tensor], weight: Sequence[float], *, consensus: bool,
            normalize: bool, lambda_: float) -> Tensor:
    """``base`` plus the weighted (optionally sign-elected, normalised, scaled) sum of ``deltas``."""
    import torch

    if not deltas:
        return base
    stacked = torch.stack(list(deltas))
    del deltas  # the stack holds them now; in-place steps below keep memory at ~k copies of one weight
    w = torch.tensor(list(weight), dtype=stacked.dtype, device=stacked.device)
    w = w.reshape(-1, *([1] * base.dim()))
    stacked.mul_(w)
    if consensus:
        mask = sign_agreement(stacked)
        divisor = (w * mask).sum(dim=0)
        divisor[divisor == 0] = 1
        mixed = stacked.mul_(mask).sum(dim=0)
        del mask
    else:
        mixed = stacked.sum(dim=0)
        divisor = w.sum(dim=0)
        divisor[divisor.abs() < 1e-8] = 1
    if normalize:
        mixed = mixed / divisor
    if lambda_ != 1:
        mixed = mixed * lambda_
    return base + mixed


def sign_agreement(weighted: Tensor) -> Tensor:
    """Boolean mask: which weighted deltas share the sign of their sum (the elected sign; 0 counts as +)."""
    elected = (weighted.sum(dim=0) >= 0).to(weighted.dtype) * 2 - 1
    return weighted.sign() == elected


def task_arithmetic(base: Tensor, tensors: Sequence[Tensor], *, weight: Sequence[float], lambda_: float = 1.0,
                    normalize: bool = False) -> Tensor:
    """``base + lambda · Σ w_i (model_i − base)`` (divided by ``Σ w_i`` if ``normalize``)."""
    return combine(base, [t - base for t in tensors], weight, consensus=False, normalize=normalize,
                   lambda_=lambda_)


METHOD = MergeMethod(
    name="task_arithmetic", function=task_arithmetic, uses_base=True, per_model={"weight": WEIGHT},
    shared={"lambda": LAMBDA, "normalize": Param(bool, False, doc="divide by the sum of the weights")},
    reference="https://arxiv.org/abs/2212.04089",
)
