"""SLERP: spherical linear interpolation between the base and one other model (Shoemake 1985), the merge
MediPhi uses to fold each domain expert back into its base at ``t = 0.5`` (arXiv 2505.10717).

Each weight is flattened; with ``cos Ω`` the cosine between the two (normalised) flattened tensors,
``slerp(t) = sin((1−t)Ω)/sin Ω · θ_base + sin(tΩ)/sin Ω · θ_other``. Nearly collinear tensors
(``|cos Ω| > 0.9995``, as in mergekit) are interpolated linearly, where SLERP is numerically ill-posed and
equal to LERP anyway. ``t`` is shared, so a filter can give attention and MLP weights different values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from slmkit.merge.method import MergeMethod, Param

if TYPE_CHECKING:
    from torch import Tensor

DOT_THRESHOLD = 0.9995
EPS = 1e-8


def slerp(base: Tensor, tensors: Sequence[Tensor], *, t: float) -> Tensor:
    """Interpolate from ``base`` (t = 0) to ``tensors[0]`` (t = 1) along the great circle."""
    import math

    import torch

    dtype = torch.float64 if base.dtype == torch.float64 else torch.float32
    a, b = base.reshape(-1).to(dtype), tensors[0].reshape(-1).to(dtype)
    if a.numel() == 0:
        return base
    norm_a, norm_b = torch.linalg.vector_norm(a), torch.linalg.vector_norm(b)
    norm_a = norm_a if norm_a > EPS else torch.ones_like(norm_a)
    norm_b = norm_b if norm_b > EPS else torch.ones_like(norm_b)
    dot = float(((a / norm_a) * (b / norm_b)).sum().clamp(-1, 1))
    if abs(dot) > DOT_THRESHOLD:
        coef_a, coef_b = 1 - t, t
    else:
        theta = math.acos(dot)
        coef_a = math.sin((1 - t) * theta) / math.sin(theta)
        coef_b = math.sin(t * theta) / math.sin(theta)
    return (coef_a * a + coef_b * b).reshape(base.shape)


METHOD = MergeMethod(
    name="slerp", function=slerp, uses_base=True, min_models=1, max_models=1,
    shared={"t": Param(float, low=0.0, high=1.0, doc="interpolation factor: 0 = base, 1 = the other model")},
    reference="https://en.wikipedia.org/wiki/Slerp",
)
