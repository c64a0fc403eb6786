"""Lazy lookup in the plain-dict registries (stages, architectures, tasks, backends, ...).

Registries map a name to ``"module"`` or ``"module:attribute"`` strings so that listing names never
imports heavy code. ``resolve`` imports on demand and turns an unknown name into one clear error with a
"did you mean" and the known names.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any


def resolve(registry: dict[str, str], name: str, what: str, error: type[Exception]) -> Any:
    """Import and return what ``registry[name]`` points at; ``error`` for an unknown name."""
    if name not in registry:
        close = difflib.get_close_matches(str(name), list(registry), n=1)
        hint = f" — did you mean '{close[0]}'?" if close else ""
        raise error(f"unknown {what} '{name}'{hint} (known: {', '.join(sorted(registry))})")
    module, _, attr = registry[name].partition(":")
    loaded = importlib.import_module(module)
    return getattr(loaded, attr) if attr else loaded
