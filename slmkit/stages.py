"""Registry of stage types: name -> module path, imported only when a stage is used.

A stage module exports a frozen ``Config`` dataclass, ``OUTPUTS`` (output name -> path inside the stage
folder) and ``run(cfg, run_dir) -> Result``; optionally ``OUTPUT_FIELDS`` (output name -> config field that,
when set, is that output's path instead). Adding a stage is one module and one line here.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from slmkit.errors import ConfigError
from slmkit.registry import resolve

STAGES: dict[str, str] = {
    "data": "slmkit.data.stage",
    "tokenizer": "slmkit.models.tokenizer",
    "sft": "slmkit.train.sft",
    "distill": "slmkit.train.distill",
    "exact_match": "slmkit.eval.exact_match",
    "preference": "slmkit.train.preference",
    "practice": "slmkit.train.practice",
    "eval": "slmkit.eval.stage",
    "export": "slmkit.deploy.stage",
    "efficiency": "slmkit.bench.stage",
    "merge": "slmkit.merge.stage",
    "exact_match_table": "slmkit.eval.table",
    "guard_data": "slmkit.guard.data",
    "guard_train": "slmkit.guard.train",
    "guard_export": "slmkit.guard.export",
    "guard_eval": "slmkit.guard.evaluate",
    "synth": "slmkit.synth.stage",
}


def load_stage(name: str) -> ModuleType:
    """Import the module of stage type ``name``; unknown names get a "did you mean"."""
    return resolve(STAGES, name, "stage", ConfigError)


def output_path(module: ModuleType, cfg: Any, folder: Path, output: str) -> Path:
    """Where a stage writes ``output``: ``folder / OUTPUTS[output]``, unless the module's ``OUTPUT_FIELDS``
    names a config field that moves it and ``cfg`` sets that field (e.g. eval's ``store``)."""
    moved_by = getattr(module, "OUTPUT_FIELDS", {}).get(output)
    moved_to = getattr(cfg, moved_by) if moved_by else None
    return Path(moved_to) if moved_to else folder / module.OUTPUTS[output]
