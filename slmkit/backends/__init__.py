"""Text-generation backends: one small interface for teachers, judges, graders and synthetic-data roles.

A backend is any object with ``name`` and ``generate(prompts, cfg) -> list[Generation]`` (see
``slmkit.models.generate``). ``BACKENDS`` maps a kind to a "module:Class" string; ``make_backend`` builds
one from a spec such as ``{"kind": "local", "model": "runs/x/02_sft/model"}``. Kinds: ``local`` (any
transformers model folder or hub id), ``openai`` (any OpenAI-compatible server: ``slmkit serve``, vLLM,
llama.cpp, the OpenAI API), ``ctranslate2`` (a folder made by ``slmkit export``), ``guarded`` (any backend
spec behind a prompt guard: ``{"kind": "guarded", "backend": {...}, "guard": "<guard folder>"}``),
``rule_math`` (the rule-based teacher of the built-in math task, see ``slmkit/synth/rule_teacher.py``);
other kinds add one line here.
"""

from __future__ import annotations

from typing import Any, Protocol

from slmkit.errors import ConfigError
from slmkit.registry import resolve


class Backend(Protocol):
    """What every backend offers."""

    name: str

    def generate(self, prompts: list[str], cfg: Any) -> list[Any]:
        """``cfg`` is a ``GenerateConfig``; returns one ``Generation`` per prompt, in order."""


BACKENDS: dict[str, str] = {
    "local": "slmkit.backends.local:LocalBackend",
    "openai": "slmkit.backends.openai:OpenAIBackend",
    "ctranslate2": "slmkit.deploy.ctranslate2:CT2Backend",
    "guarded": "slmkit.guard.guarded:GuardedBackend",
    "rule_math": "slmkit.synth.rule_teacher:RuleMathBackend",
}


def make_backend(spec: dict[str, Any]) -> Backend:
    """Build a backend from ``{"kind": ..., **kwargs}``; unknown kinds and bad kwargs are config errors."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    cls = resolve(BACKENDS, kind, "backend kind", ConfigError)
    try:
        return cls(**spec)
    except TypeError as err:
        raise ConfigError(f"backend '{kind}': {err}") from None
