"""Recipes: a YAML file naming an ordered list of stages, resolved into a plan and run.

A recipe looks like::

    schema_version: 1
    name: quickstart
    stages:
      - stage: data            # stage type (see ``slmkit list stages``)
        task: math
      - stage: sft
        name: sft              # optional; defaults to the stage type
        from: [data]           # unset input fields are taken from these stages' outputs, by name
        tokenizer: {from: data.tokenizer}   # or wire one field explicitly
      - stage: merge
        base_model: {from: base.model}      # references may also sit inside lists and mappings
        models: [{model: {from: expert.model}, parameters: {t: 0.5}}]

Resolution is static: every input path is known before anything runs, so ``validate`` and
``show-config`` catch wiring mistakes at once. Running a plan writes ``<runs>/<recipe>/<NN>_<name>/``
per stage (see ``artifacts``) and reuses a stage whose config and input contents are unchanged. A stage's
identity leaves out where its inputs live (their contents stand for them), so a runs folder that is moved or
copied elsewhere is reused there, with the recorded output paths moved along.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from slmkit import artifacts
from slmkit.config import Lines, Where, from_dict, input_fields, load_yaml, parse_override, to_dict
from slmkit.errors import ConfigError
from slmkit.stages import load_stage, output_path

SCHEMA_VERSION = 1
RESERVED = ("stage", "name", "from")


@dataclasses.dataclass(frozen=True)
class StagePlan:
    """One stage, fully resolved: its config (with input paths filled in) and where it runs."""

    index: int
    name: str
    stage: str
    config: Any
    module: ModuleType
    folder: Path
    upstream: dict[str, tuple[str, str]]  # input field -> (stage name, output name)


@dataclasses.dataclass(frozen=True)
class Plan:
    """A resolved recipe."""

    name: str
    root: Path
    stages: list[StagePlan]


def load_plan(path: str | Path, overrides: list[str] = (), runs_dir: str | Path = "runs") -> Plan:
    """Read, override and resolve a recipe file."""
    data, lines = load_yaml(path)
    return resolve(data, lines, str(path), overrides, Path(runs_dir))


def resolve(data: Any, lines: Lines, source: str, overrides: list[str], runs_dir: Path) -> Plan:
    """Check the recipe's shape, apply dotted overrides and resolve every stage."""
    where = Where(source, lines)
    if not isinstance(data, dict):
        raise where.fail("a recipe must be a mapping with schema_version, name and stages")
    for key in data:
        if key not in ("schema_version", "name", "stages", "description"):
            raise where.at(key).fail(f"unknown key '{key}' (a recipe has schema_version, name, description, stages)")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise where.at("schema_version").fail(f"schema_version must be {SCHEMA_VERSION}")
    name = artifacts.check_name(data.get("name", ""), f"{source}: recipe name")
    entries = data.get("stages")
    if not isinstance(entries, list) or not entries:
        raise where.at("stages").fail("stages must be a non-empty list")
    entries = _apply_overrides(copy.deepcopy(entries), overrides, lines, where)
    root = runs_dir / name
    planned: list[StagePlan] = []
    for index, entry in enumerate(entries):
        planned.append(_resolve_stage(index, entry, where.at("stages").at(index), planned, root))
    return Plan(name=name, root=root, stages=planned)


def _stage_name(entry: Any) -> str | None:
    return entry.get("name", entry.get("stage")) if isinstance(entry, dict) else None


def _apply_overrides(entries: list, overrides: list[str], lines: Lines, where: Where) -> list:
    names = [_stage_name(e) for e in entries]
    for text in overrides:
        parts, value = parse_override(text)
        if parts[0] not in names:
            raise ConfigError(f"command line: override '{text}': no stage named '{parts[0]}' "
                              f"(stages: {', '.join(map(str, names))})")
        index = names.index(parts[0])
        target = entries[index]
        for key in parts[1:-1]:
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                raise ConfigError(f"command line: override '{text}': '{key}' is not a mapping")
        target[parts[-1]] = value
        lines[where.path + ("stages", index, *parts[1:])] = 0  # 0 = "from the command line"
    return entries


def _resolve_stage(index: int, entry: Any, where: Where, done: list[StagePlan], root: Path) -> StagePlan:
    if not isinstance(entry, dict) or "stage" not in entry:
        raise where.fail("each stage must be a mapping with a 'stage' key")
    module = _load_stage(entry["stage"], where.at("stage"))
    name = artifacts.check_name(str(entry.get("name", entry["stage"])), f"{where.source}: stage name")
    if any(p.name == name for p in done):
        raise where.fail(f"two stages are named '{name}': give one a distinct 'name'")
    body = {k: v for k, v in entry.items() if k not in RESERVED}
    upstream = _wire_inputs(module, body, entry.get("from"), where, done)
    config = from_dict(module.Config, body, where)
    folder = root / f"{index:02d}_{name}"
    return StagePlan(index, name, entry["stage"], config, module, folder, upstream)


def _load_stage(kind: Any, where: Where) -> ModuleType:
    try:
        return load_stage(str(kind))
    except ConfigError as err:
        raise where.fail(str(err)) from None


def _wire_inputs(module: ModuleType, body: dict, sources: Any, where: Where,
                 done: list[StagePlan]) -> dict[str, tuple[str, str]]:
    """Fill input fields from earlier stages' outputs; rewrite ``{from: stage.output}`` to paths."""
    by_name = {p.name: p for p in done}
    if sources is None:
        sources = []
    sources = [sources] if isinstance(sources, str) else sources
    if not isinstance(sources, list):
        raise where.at("from").fail("from must be a stage name or a list of stage names")
    for src in sources:
        if src not in by_name:
            raise where.at("from").fail(f"'{src}' is not an earlier stage (earlier: {', '.join(by_name) or 'none'})")
    upstream: dict[str, tuple[str, str]] = {}
    for field_name in input_fields(module.Config):
        value = body.get(field_name)
        if isinstance(value, dict) and set(value) == {"from"}:
            src, _, output = str(value["from"]).partition(".")
            output = output or field_name
            if src not in by_name or output not in by_name[src].module.OUTPUTS:
                raise where.at(field_name).fail(f"'{value['from']}' is not an output of an earlier stage")
            upstream[field_name] = (src, output)
        elif value is None:
            for src in sources:
                if field_name in by_name[src].module.OUTPUTS:
                    upstream[field_name] = (src, field_name)
                    break
        elif isinstance(value, str):
            body[field_name] = expand_path(value)
        elif isinstance(value, list | dict):
            body[field_name] = _wire_nested(value, field_name, by_name, where.at(field_name), upstream)
    for field_name, (src, output) in upstream.items():
        if "." not in field_name:  # nested references were rewritten in place by _wire_nested
            body[field_name] = _planned_output(by_name[src], output)
    return upstream


def _planned_output(src: StagePlan, output: str) -> str:
    return str(output_path(src.module, src.config, src.folder, output))


def _wire_nested(value: Any, key: str, by_name: dict[str, StagePlan], where: Where,
                 upstream: dict[str, tuple[str, str]]) -> Any:
    """Rewrite ``{from: stage.output}`` anywhere inside a list/mapping input (e.g. the models of a merge).

    The output defaults to the innermost key (``- model: {from: expert}`` takes the expert's ``model``);
    each reference is recorded under its dotted key (``models.0.model``) so its content is hashed.
    """
    if isinstance(value, dict) and set(value) == {"from"}:
        src, _, output = str(value["from"]).partition(".")
        output = output or key.rsplit(".", 1)[-1]
        if src not in by_name or output not in by_name[src].module.OUTPUTS:
            raise where.fail(f"'{value['from']}' is not an output of an earlier stage (write stage.output)")
        upstream[key] = (src, output)
        return _planned_output(by_name[src], output)
    if isinstance(value, dict):
        return {k: _wire_nested(v, f"{key}.{k}", by_name, where.at(k), upstream) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire_nested(v, f"{key}.{i}", by_name, where.at(i), upstream) for i, v in enumerate(value)]
    return value


def expand_path(value: str) -> str:
    """Expand ``${SLMKIT_DATA}`` (the shared data folder) and other environment variables in a path."""
    if "SLMKIT_DATA" in value and "SLMKIT_DATA" not in os.environ:
        from slmkit.data.shared import shared_data_dir

        return value.replace("${SLMKIT_DATA}", str(shared_data_dir())).replace("$SLMKIT_DATA", str(shared_data_dir()))
    return os.path.expandvars(value)


def run_plan(plan: Plan, force: bool | set[str] = False, only: set[str] | None = None,
             echo: Any = print) -> dict[str, dict]:
    """Run (or reuse) each stage in order; return each stage's ``result.json`` content."""
    results: dict[str, dict] = {}
    for step in plan.stages:
        if only and step.name not in only:
            done = step.folder / "result.json"
            if not done.exists():
                raise ConfigError(f"stage '{step.name}' has not run yet; run it first or drop --only")
            results[step.name] = artifacts.read_json(done)
            continue
        redo = force is True or (isinstance(force, set) and step.name in force)
        results[step.name] = run_stage(step, results, redo, echo)
    return results


def run_stage(step: StagePlan, results: dict[str, dict], force: bool, echo: Any = print) -> dict:
    """Run one stage unless an identical run (same config, same input contents) is already complete."""
    config = to_dict(step.config)
    hashes = _input_hashes(step, results)
    fp = artifacts.fingerprint(_without_input_paths(config, hashes), hashes)
    done_file = step.folder / "result.json"
    if done_file.exists() and not force:
        previous = artifacts.read_json(done_file)
        if previous.get("fingerprint") == fp:
            echo(f"[{step.index:02d}] {step.name}: reused (config and inputs unchanged)")
            return _relocated(previous, step.folder, done_file)
    main = artifacts.is_main_process()
    if main:
        _prepare_folder(step, config, hashes, fp, force)
    artifacts.barrier()
    echo(f"[{step.index:02d}] {step.name}: running {step.stage}")
    start = time.time()
    result = step.module.run(step.config, step.folder)
    artifacts.barrier()
    outputs = {k: _planned_output(step, k) for k in step.module.OUTPUTS} | dict(result.outputs)
    record = {
        "stage": step.stage, "name": step.name, "fingerprint": fp, "metrics": result.metrics,
        "outputs": outputs, "output_hashes": {k: artifacts.hash_path(v) for k, v in outputs.items()
                                              if Path(v).exists()},
        "wall_time_s": round(time.time() - start, 2), "folder": str(step.folder),
    }
    if main:
        artifacts.atomic_write_json(done_file, record)
    return record


def _without_input_paths(config: dict, hashes: dict[str, str]) -> dict:
    """The config with every input path (dotted key in ``hashes``) blanked: its content hash stands for it."""
    portable = copy.deepcopy(config)
    for key in hashes:
        *parents, leaf = key.split(".")
        node: Any = portable
        for part in parents:
            node = _child(node, part)
        if _child(node, leaf) is not None:
            node[int(leaf) if isinstance(node, list) else leaf] = "<input>"
    return portable


def _child(node: Any, part: str) -> Any:
    if isinstance(node, list):
        return node[int(part)] if part.isdigit() and int(part) < len(node) else None
    return node.get(part) if isinstance(node, dict) else None


def _relocated(record: dict, folder: Path, done_file: Path) -> dict:
    """A reused stage's record with output paths inside its old folder moved to ``folder`` (saved if moved)."""
    old = Path(record.get("folder", folder))
    if old == folder:
        return record

    def moved(path: str) -> str:
        return str(folder / Path(path).relative_to(old)) if Path(path).is_relative_to(old) else path

    record = {**record, "folder": str(folder), "outputs": {k: moved(v) for k, v in record["outputs"].items()}}
    if artifacts.is_main_process():
        artifacts.atomic_write_json(done_file, record)
    return record


def _prepare_folder(step: StagePlan, config: dict, hashes: dict[str, str], fp: str, force: bool) -> None:
    """Fresh folder on --force; the stale completion mark removed; resolved config and provenance written."""
    if force and step.folder.exists():
        shutil.rmtree(step.folder)
    done_file = step.folder / "result.json"
    if done_file.exists():
        done_file.unlink()  # its artefacts are about to be replaced: never leave a stale "complete" mark
    step.folder.mkdir(parents=True, exist_ok=True)
    _write_yaml(step.folder / "config.yaml", {"stage": step.stage, "name": step.name, **config})
    artifacts.atomic_write_json(step.folder / "provenance.json",
                                {**artifacts.provenance(config, hashes), "fingerprint": fp})


def _input_hashes(step: StagePlan, results: dict[str, dict]) -> dict[str, str]:
    hashes = {key: results.get(src, {}).get("output_hashes", {}).get(output) or "missing"
              for key, (src, output) in step.upstream.items()}
    for field_name in input_fields(type(step.config)):
        for key, value in _input_leaves(field_name, getattr(step.config, field_name)):
            if key not in hashes:  # not wired from a stage: a user's path or hub id
                hashes[key] = artifacts.hash_input(value)
    return hashes


def _input_leaves(key: str, value: Any) -> list[tuple[str, str]]:
    """(dotted key, path) of every path in an input field; nested configs contribute their input fields."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [leaf for i, v in enumerate(value) for leaf in _input_leaves(f"{key}.{i}", v)]
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _input_leaves(f"{key}.{k}", v)]
    if dataclasses.is_dataclass(value):
        return [leaf for name in input_fields(type(value))
                for leaf in _input_leaves(f"{key}.{name}", getattr(value, name))]
    return [(key, str(value))]


def _write_yaml(path: Path, data: dict) -> None:
    import yaml

    artifacts.atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))


def resolved_yaml(plan: Plan) -> str:
    """The fully resolved recipe as YAML: what ``show-config`` prints and what will run."""
    import yaml

    stages = [{"stage": s.stage, "name": s.name, "folder": str(s.folder), **to_dict(s.config)}
              for s in plan.stages]
    return yaml.safe_dump({"schema_version": SCHEMA_VERSION, "name": plan.name, "stages": stages},
                          sort_keys=False)
