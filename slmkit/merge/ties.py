"""TIES-merging (Yadav et al. 2023, "Resolving Interference When Merging Models", arXiv 2306.01708).

Trim each task vector to its ``density`` fraction of largest-magnitude entries, elect a sign per entry from
the weighted sum, and average only the deltas that agree with it (``normalize``, on by default, divides by
the weights of the agreeing deltas), then scale by ``lambda`` and add to the base.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from slmkit.merge.method import DENSITY, LAMBDA, WEIGHT, MergeMethod, Param
from slmkit.merge.sparsify import magnitude
from slmkit.merge.task_arithmetic import combine

if TYPE_CHECKING:
    from torch import Tensor


def ties(base: Tensor, tensors: Sequence[Tensor], *, weight: Sequence[float], density: Sequence[float],
         lambda_: float = 1.0, normalize: bool = True, rescale: bool = False, int8_mask: bool = False) -> Tensor:
    """TIES: magnitude trim, sign election, disjoint (weighted) mean."""
    return combine(base, [magnitude(t - base, d, rescale) for t, d in zip(tensors, density)], weight,
                   consensus=True, normalize=normalize, lambda_=lambda_)


SHARED = {
    "normalize": Param(bool, True, doc="divide by the summed weights of the agreeing deltas"),
    "lambda": LAMBDA,
    "rescale": Param(bool, False, doc="rescale kept entries to the task vector's L1 norm"),
    # mergekit's memory option for its sign mask; slmkit's mask is boolean already, so it changes nothing.
    "int8_mask": Param(bool, False, doc="accepted for mergekit compatibility (no effect)"),
}

METHOD = MergeMethod(
    name="ties", function=ties, uses_base=True, per_model={"weight": WEIGHT, "density": DENSITY},
    shared=SHARED, reference="https://arxiv.org/abs/2306.01708",
)
