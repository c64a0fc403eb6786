"""What a merge method declares: its tensor function, its inputs and its parameters with defaults and checks.

Every method is a pure function ``fn(base, tensors, **parameters) -> Tensor`` over the tensors of one
weight (``base`` is None for methods without a base). Parameters follow mergekit's names and scopes:
``per_model`` ones (``weight``, ``density``, ``gamma``, ``t``...) get one value per non-base input, passed as
a list aligned with ``tensors``; ``shared`` ones (``normalize``, ``lambda``, ``t``...) get one value per
tensor. Checking values here, once per tensor, is what lets a merge fail before any weight is loaded.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

REQUIRED: Any = "(required)"
"""Default of a parameter that has none: the config must set it."""


@dataclass(frozen=True)
class Param:
    """One parameter: its type, its default and the range its values must lie in."""

    kind: type
    default: Any = REQUIRED
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    doc: str = ""

    def check(self, value: Any) -> tuple[Any, str | None]:
        """(converted value, None) or (value, why it is invalid)."""
        if self.kind is bool:
            return (value, None) if isinstance(value, bool) else (value, "must be true or false")
        if isinstance(value, bool) or not isinstance(value, int | float):
            return value, "must be a number"
        value = float(value)
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return value, f"must be {'>' if self.open_low else '>='} {self.low}"
        if self.high is not None and value > self.high:
            return value, f"must be <= {self.high}"
        return value, None


WEIGHT = Param(float, doc="scale of this model's contribution")
DENSITY = Param(float, 1.0, 0.0, 1.0, open_low=True, doc="fraction of the task vector's entries kept")
LAMBDA = Param(float, 1.0, doc="scale of the summed task vectors")


@dataclass(frozen=True)
class MergeMethod:
    """A registered merge method (see ``slmkit.merge.MERGE_METHODS``)."""

    name: str
    function: Callable[..., Any]
    uses_base: bool
    per_model: dict[str, Param] = field(default_factory=dict)
    shared: dict[str, Param] = field(default_factory=dict)
    min_models: int = 1
    max_models: int | None = None
    stochastic: bool = False
    reference: str = ""
    check: Callable[[dict[str, Any], list[dict[str, Any]]], str | None] | None = None
    """Cross-parameter check on one weight's resolved values (e.g. weights that sum to zero)."""

    def parameters(self) -> dict[str, Param]:
        return {**self.shared, **self.per_model}

    def __call__(self, base: Any, tensors: list[Any], shared: dict[str, Any], per_model: list[dict[str, Any]],
                 generator: Any = None) -> Any:
        """Apply the method to one weight: shared values by name, per-model values as aligned lists."""
        kwargs = {_py(k): v for k, v in shared.items()}
        for name in self.per_model:
            kwargs[_py(name)] = [values[name] for values in per_model]
        if self.stochastic:
            kwargs["generator"] = generator
        return self.function(base, tensors, **kwargs)


def _py(name: str) -> str:
    """mergekit's ``lambda`` is a Python keyword; the functions take ``lambda_``."""
    return name + "_" if keyword.iskeyword(name) else name
