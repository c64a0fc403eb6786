"""Registry of stage types: name -> module path, imported only when a stage is used.

A stage module exports a frozen ``Config`` dataclass, ``OUTPUTS`` (output name -> path inside the stage
folder) and ``run(cfg, run_dir) -> Result``; optionally ``OUTPUT_FIELDS`` (output name -> config field that,
when set, is that output's path instead). Adding a stage is one module and one line here.
"""

from __future__ import annotations

from types import ModuleType

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
