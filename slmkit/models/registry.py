"""Registry of architectures: name -> module, imported lazily.

Each architecture module exports ``KIND`` ("decoder" or "encdec"), ``PRESETS`` (preset name -> config
keyword arguments), ``DEFAULT_VOCAB`` (the vocabulary size used when no tokenizer is given, e.g. for
parameter counts in ``slmkit list``) and ``make_config(preset, vocab_size, special_ids, overrides)``.
Optional: ``OVERRIDE_KEYS`` (the override keys it accepts, when they are not the fields of its transformers
config) and ``register()`` (makes its own modelling classes known to transformers' Auto classes).
"""

from __future__ import annotations

import difflib
from types import ModuleType

from slmkit.errors import ModelError
from slmkit.registry import resolve

ARCHITECTURES: dict[str, str] = {
    "decoder": "slmkit.models.decoder",
    "t5": "slmkit.models.t5",
    "encdec": "slmkit.models.encdec",
}


def get_arch(name: str) -> ModuleType:
    """The module of architecture ``name``; unknown names get a "did you mean"."""
    return resolve(ARCHITECTURES, name, "architecture", ModelError)


def register_models() -> None:
    """Register every architecture that has its own modelling code, so Auto classes can load its folders."""
    for name in ARCHITECTURES:
        module = get_arch(name)
        if hasattr(module, "register"):
            module.register()


def preset_kwargs(arch: ModuleType, name: str, preset: str) -> dict:
    """The keyword arguments of a preset, or an error listing the presets of that architecture."""
    if preset not in arch.PRESETS:
        close = difflib.get_close_matches(preset, arch.PRESETS, n=1)
        hint = f" — did you mean '{close[0]}'?" if close else ""
        raise ModelError(f"architecture '{name}' has no preset '{preset}'{hint} "
                         f"(presets: {', '.join(arch.PRESETS)})")
    return dict(arch.PRESETS[preset])
