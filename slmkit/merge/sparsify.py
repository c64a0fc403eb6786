"""Sparsification of task vectors (delta = model − base): which entries a merge keeps.

* ``magnitude`` — keep the ``density`` fraction of largest-magnitude entries (TIES, Yadav et al. 2023,
  arXiv 2306.01708, step "trim").
* ``bernoulli`` — keep each entry with probability ``density`` (DARE, Yu et al. 2023, arXiv 2311.03099,
  "drop and rescale").
* ``magnitude_outliers`` — drop the ``gamma`` fraction of largest entries (outliers) and then the smallest,
  keeping ``density`` (Model Breadcrumbs, Davari & Belilovsky 2023, arXiv 2312.06795).

``rescale=True`` multiplies the kept entries so that the L1 norm of the delta is unchanged, as mergekit
0.1.5 does; for DARE this equals the paper's 1/density rescaling in expectation. Selections reproduce
mergekit's (same sort, same tie handling, same RNG calls) so that merges match it to float rounding.
Pure functions on tensors; nothing is read or written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Generator, Tensor

_EPS = 1e-7


def keep_masked(delta: Tensor, mask: Tensor, rescale: bool) -> Tensor:
    """``delta * mask``, rescaled to the L1 norm of ``delta`` when asked (unless either norm is ~0)."""
    kept = delta * mask
    if not rescale:
        return kept
    before, after = delta.abs().sum(), kept.abs().sum()
    if before < _EPS or after < _EPS:
        return kept
    return kept * (before / after)


def magnitude(delta: Tensor, density: float, rescale: bool = False) -> Tensor:
    """Keep the ``density`` fraction of entries with the largest magnitude (at least one)."""
    import torch

    if density >= 1:
        return delta
    if density <= 0 or delta.numel() == 0:
        return torch.zeros_like(delta)
    k = max(1, int(density * delta.numel()))
    order = torch.argsort(delta.abs().reshape(-1).float(), descending=True)
    mask = torch.zeros(delta.numel(), dtype=delta.dtype, device=delta.device)
    mask[order[:k]] = 1
    return keep_masked(delta, mask.reshape_as(delta), rescale)


def magnitude_outliers(delta: Tensor, density: float, gamma: float, rescale: bool = False) -> Tensor:
    """Drop the top ``gamma`` fraction (outliers) and the smallest entries, keeping ``density`` of them."""
    import torch

    if density >= 1:
        return delta
    n = delta.numel()
    keep = int(density * n)
    top = int(gamma * n)
    # When density + gamma > 1 fewer outliers are dropped, so that `density` is still kept.
    bottom = max(0, n - keep - top)
    order = torch.sort(delta.abs().reshape(-1).float(), descending=False).indices
    mask = torch.zeros(n, dtype=delta.dtype, device=delta.device)
    mask[order[bottom:bottom + keep]] = 1
    return keep_masked(delta, mask.reshape_as(delta), rescale)


def bernoulli(delta: Tensor, density: float, rescale: bool, generator: Generator | None) -> Tensor:
    """Keep each entry independently with probability ``density`` (one RNG draw per entry)."""
    import torch

    if density >= 1:
        return delta
    # float32 probabilities on CPU (torch has no CPU bernoulli for float16); bfloat16 stays as mergekit has it.
    work = delta.dtype if delta.dtype == torch.bfloat16 else torch.float32
    mask = torch.bernoulli(torch.full_like(delta, density, dtype=work), generator=generator)
    return keep_masked(delta.to(work), mask, rescale).to(delta.dtype)
