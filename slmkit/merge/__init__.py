"""Model merging: one pure tensor function per method, streamed over safetensors shards.

``MERGE_METHODS`` maps a method name (mergekit's names) to the ``MergeMethod`` that declares its function,
inputs and parameters; adding a method is one file and one line here. The rest of the package reads
mergekit-style YAML into typed configs (``config``), checks every input from file headers alone before any
weight is read (``plan``), and streams the merge one tensor at a time into sharded safetensors
(``execute``, ``writer``), with the resolved config and a model card (``card``). ``stage`` is the recipe
stage ``merge``; ``command`` is ``slmkit merge CONFIG.yaml OUT``.
"""

from __future__ import annotations

from typing import Any

from slmkit.errors import ConfigError
from slmkit.registry import resolve

MERGE_METHODS: dict[str, str] = {
    "linear": "slmkit.merge.linear:METHOD",
    "task_arithmetic": "slmkit.merge.task_arithmetic:METHOD",
    "ties": "slmkit.merge.ties:METHOD",
    "dare_linear": "slmkit.merge.dare:DARE_LINEAR",
    "dare_ties": "slmkit.merge.dare:DARE_TIES",
    "slerp": "slmkit.merge.slerp:METHOD",
    "breadcrumbs": "slmkit.merge.breadcrumbs:BREADCRUMBS",
    "breadcrumbs_ties": "slmkit.merge.breadcrumbs:BREADCRUMBS_TIES",
    "model_stock": "slmkit.merge.model_stock:METHOD",
}


def get_method(name: str) -> Any:
    """The ``MergeMethod`` registered as ``name`` (an unknown name gets a "did you mean")."""
    return resolve(MERGE_METHODS, name, "merge method", ConfigError)
