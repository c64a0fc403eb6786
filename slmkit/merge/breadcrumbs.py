"""Model Breadcrumbs (Davari & Belilovsky 2023, arXiv 2312.06795), the merge MediPhi uses across experts.

Each task vector drops its ``gamma`` fraction of largest-magnitude entries (outliers that dominate and
interfere) and its smallest ones, keeping ``density``; the sparse deltas are summed with their weights
(``breadcrumbs``) or with TIES's sign election (``breadcrumbs_ties``). Deterministic: no randomness.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from slmkit.merge.method import DENSITY, LAMBDA, WEIGHT, MergeMethod, Param
from slmkit.merge.sparsify import magnitude_outliers
from slmkit.merge.task_arithmetic import combine

if TYPE_CHECKING:
    from torch import Tensor


def _deltas(base: Tensor, tensors: Sequence[Tensor], density: Sequence[float], gamma: Sequence[float],
            rescale: bool) -> list[Tensor]:
    return [magnitude_outliers(t - base, d, g, rescale) for t, d, g in zip(tensors, density, gamma)]


def breadcrumbs(base: Tensor, tensors: Sequence[Tensor], *, weight: Sequence[float], density: Sequence[float],
                gamma: Sequence[float], rescale: bool = False, normalize: bool = False,
                lambda_: float = 1.0) -> Tensor:
    """Outlier- and small-entry-trimmed task vectors, summed with their weights."""
    return combine(base, _deltas(base, tensors, density, gamma, rescale), weight, consensus=False,
                   normalize=normalize, lambda_=lambda_)


def breadcrumbs_ties(base: Tensor, tensors: Sequence[Tensor], *, weight: Sequence[float],
                     density: Sequence[float], gamma: Sequence[float], rescale: bool = False,
                     normalize: bool = False, lambda_: float = 1.0, int8_mask: bool = False) -> Tensor:
    """Breadcrumbs trimming, then TIES's sign election and disjoint sum."""
    return combine(base, _deltas(base, tensors, density, gamma, rescale), weight, consensus=True,
                   normalize=normalize, lambda_=lambda_)


PER_MODEL = {"weight": WEIGHT, "density": DENSITY,
             "gamma": Param(float, 0.01, 0.0, 1.0, doc="fraction of largest entries dropped as outliers")}
SHARED = {
    "rescale": Param(bool, False, doc="rescale kept entries to the task vector's L1 norm"),
    "normalize": Param(bool, False, doc="divide by the summed weights"),
    "lambda": LAMBDA,
}

BREADCRUMBS = MergeMethod(
    name="breadcrumbs", function=breadcrumbs, uses_base=True, per_model=PER_MODEL, shared=SHARED,
    reference="https://arxiv.org/abs/2312.06795",
)
BREADCRUMBS_TIES = MergeMethod(
    name="breadcrumbs_ties", function=breadcrumbs_ties, uses_base=True, per_model=PER_MODEL,
    shared={**SHARED, "int8_mask": Param(bool, False, doc="accepted for mergekit compatibility (no effect)")},
    reference="https://arxiv.org/abs/2312.06795",
)
