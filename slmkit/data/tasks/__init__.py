"""Registry of built-in synthetic tasks, imported lazily by name.

Each task is a module with a ``generate(n, seed, **options) -> list[dict]`` function that
returns canonical rows (``prompt``, ``completion``, ``answer``, ``meta``). Nothing is read
or written here: the registry maps a task name to a ``"module:function"`` string, and
``get_task`` imports the module only when asked, so listing tasks stays cheap.

Tasks: ``math`` (GSM8K-style word problems, Cobbe et al. 2021, arXiv 2110.14168) and
``sorting`` (the ThinkSLM sorting task, arXiv 2502.11569).
"""

from __future__ import annotations

from typing import Any, Callable

from slmkit.registry import resolve

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
    return resolve(TASKS, name, "task", KeyError)
