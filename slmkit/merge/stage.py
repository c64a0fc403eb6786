"""The ``merge`` stage: merge models given inline (mergekit's keys) or by a mergekit-style YAML file.

In a recipe, ``base_model`` and ``models[].model`` take ``{from: stage.output}`` references, so a chain of
merges is a chain of stages (MediPhi: one SLERP stage per expert, then a BreadCrumbs stage over their
outputs); a ``config_file`` may also hold a whole chain (several ``---``-separated documents with names).
Everything is checked from file headers before any weight is read. Reads: the input model folders.
Writes: ``model/`` (sharded safetensors, config, tokenizer, ``merge_config.yaml``, ``README.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from slmkit.artifacts import Result
from slmkit.config import Where, field, to_dict
from slmkit.errors import ConfigError
from slmkit.merge.config import MergeConfig, MergeDoc, doc_from_dict, read_merge_file


@dataclass(frozen=True, kw_only=True)
class Config(MergeConfig):
    merge_method: str | None = field(None, doc="merge method (see slmkit.merge.MERGE_METHODS), unless config_file")
    config_file: str | None = field(None, doc="a mergekit-style YAML file (one merge or a chain) instead of "
                                              "the inline keys", input=True)
    seed: int = field(0, doc="seed of the random methods (DARE), as mergekit's random_seed")
    shard_size: str = field("2GB", doc="largest output shard (e.g. 2GB, 500MB)")
    device: str = field("cpu", doc="device the tensor arithmetic runs on (cpu, cuda)")


OUTPUTS = {"model": "model", "tokenizer": "model"}
STAGE_ONLY = ("config_file", "seed", "shard_size", "device")


def documents(cfg: Config) -> list[MergeDoc]:
    """The merge documents this stage runs: from ``config_file``, or the inline keys."""
    inline = {k: v for k, v in to_dict(cfg).items() if k not in STAGE_ONLY}
    if cfg.config_file:
        defaults = to_dict(Config())
        if any(v != defaults[k] for k, v in inline.items()):
            raise ConfigError("merge: set either config_file or the inline merge keys, not both")
        return read_merge_file(cfg.config_file)
    if not cfg.merge_method:
        raise ConfigError("merge: set merge_method (and base_model, models), or config_file")
    data = {k: v for k, v in inline.items() if v not in (None, {}, [])}
    return [doc_from_dict(data, Where("merge stage", {}))]


def run(cfg: Config, run_dir: Path) -> Result:
    """Merge into ``run_dir/model``."""
    from slmkit.merge.execute import merge

    plans = merge(documents(cfg), run_dir / OUTPUTS["model"], seed=cfg.seed, shard_size=cfg.shard_size,
                  device=cfg.device)
    final = plans[-1]
    params = sum(s.spec.numel for s in final.steps)
    return Result(metrics={"merges": len(plans), "method": final.method.name, "tensors": len(final.steps),
                           "parameters": params, "shards": len(final.layout)})
