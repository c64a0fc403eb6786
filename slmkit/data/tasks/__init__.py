"""Registry of built-in synthetic tasks, imported lazily by name.

Each task is a module with a ``generate(n, seed, **options) -> list[dict]`` function that
returns canonical rows (``prompt``, ``completion``, ``answer``, ``meta``). Nothing is read
or written here: the registry maps a task name to a ``"module:function"`` string, and
``get_task`` imports the module only when asked, so listing tasks stays cheap.

Tasks: ``math`` (GSM8K-style word problems, Cobbe et al. 2021, arXiv 2110.14168) and
``sorting`` (the ThinkSLM sorting task, arXiv 2502.11569).
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable

# Strings, not functions: importing every task module up front would cost time for
# callers that only want the list of names (e.g. a CLI's --help).
TASKS: dict[str, str] = {
    "math": "slmkit.data.tasks.math_word:generate",
    "sorting": "slmkit.data.tasks.sorting:generate",
}


def get_task(name: str) -> Callable[..., list[dict[str, Any]]]:
    """Return the ``generate`` function of task ``name``, importing its module on demand.

    Raises ``KeyError`` naming the known tasks (and the closest match) for an unknown name.
    """
    target = TASKS.get(name)
    if target is None:
        known = ", ".join(sorted(TASKS))
        close = difflib.get_close_matches(str(name), list(TASKS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown task {name!r}.{hint} Known tasks: {known}")
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr)
