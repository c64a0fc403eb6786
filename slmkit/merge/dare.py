"""DARE (Yu et al. 2023, "Language Models are Super Mario", arXiv 2311.03099): drop and rescale.

Each task vector keeps every entry with probability ``density`` and is rescaled (``rescale``, on by
default) so that its L1 norm is unchanged — mergekit's form of the paper's 1/density, equal to it in
expectation. ``dare_linear`` then sums the weighted deltas (task arithmetic); ``dare_ties`` adds TIES's
sign election. The only randomness is one Bernoulli draw per entry from the ``generator``, in input
order: seeded like mergekit (``random_seed``), tensors visited in name order, the masks are mergekit's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from slmkit.merge.method import DENSITY, LAMBDA, WEIGHT, MergeMethod, Param
from slmkit.merge.sparsify import bernoulli
from slmkit.merge.task_arithmetic import combine

if TYPE_CHECKING:
    from torch import Generator, Tensor


def dare_deltas(base: Tensor, tensors: Sequence[Tensor], density: Sequence[float], rescale: bool,
                generator: Generator | None) -> list[Tensor]:
    """Randomly dropped (and rescaled) task vectors, one per input."""
    return [bernoulli(t - base, d, rescale, generator) for t, d in zip(tensors, density)]


def dare_linear(base: Tensor, tensors: Sequence[Tensor], *, weight: Sequence[float], density: Sequence[float],
                rescale: bool = True, normalize: bool = False, lambda_: float = 1.0,
                generator: Generator | None = None) -> Tensor:
    """DARE then task arithmetic."""
    return combine(base, dare_deltas(base, tensors, density, rescale, generator), weight, consensus=False,
                   normalize=normalize, lambda_=lambda_)


def dare_ties(base: Tensor, tensors: Sequence[Tensor], *, weight: Sequence[float], density: Sequence[float],
              rescale: bool = True, normalize: bool = False, lambda_: float = 1.0, int8_mask: bool = False,
              generator: Generator | None = None) -> Tensor:
    """DARE then TIES's sign election and disjoint sum."""
    return combine(base, dare_deltas(base, tensors, density, rescale, generator), weight, consensus=True,
                   normalize=normalize, lambda_=lambda_)


SHARED = {
    "rescale": Param(bool, True, doc="rescale kept entries to the task vector's L1 norm"),
    "normalize": Param(bool, False, doc="divide by the summed weights"),
    "lambda": LAMBDA,
}

DARE_LINEAR = MergeMethod(
    name="dare_linear", function=dare_linear, uses_base=True, per_model={"weight": WEIGHT, "density": DENSITY},
    shared=SHARED, stochastic=True, reference="https://arxiv.org/abs/2311.03099",
)
DARE_TIES = MergeMethod(
    name="dare_ties", function=dare_ties, uses_base=True, per_model={"weight": WEIGHT, "density": DENSITY},
    shared={**SHARED, "int8_mask": Param(bool, False, doc="accepted for mergekit compatibility (no effect)")},
    stochastic=True, reference="https://arxiv.org/abs/2311.03099",
)
