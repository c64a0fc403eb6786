"""Implementations of the core CLI commands (``cli`` only parses arguments and dispatches here).

``run``/``validate``/``show-config`` resolve a recipe (``recipe``); ``list`` prints registries with
parameter counts; a stage verb wraps its fields into a one-stage recipe so it gets the same run folder,
reuse and provenance as a recipe stage.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from slmkit.errors import ConfigError


def _console() -> Any:
    from rich.console import Console

    return Console()


def cmd_run(args: argparse.Namespace) -> int:
    from slmkit.recipe import load_plan, run_plan
    from slmkit.report import write_report

    from slmkit.cli import recipe_path

    plan = load_plan(recipe_path(args.recipe), args.overrides, args.runs_dir)
    force: bool | set[str] = False
    if args.force is not None:
        force = set(args.force) if args.force else True
        _check_names(plan, force if isinstance(force, set) else set())
    only = set(args.only) if args.only else None
    _check_names(plan, only or set())
    run_plan(plan, force=force, only=only)
    md, html = write_report(plan.root)
    print(f"report: {md}\n        {html}")
    return 0


def _check_names(plan: Any, names: set[str]) -> None:
    known = {s.name for s in plan.stages}
    for name in names - known:
        raise ConfigError(f"no stage named '{name}' in recipe '{plan.name}' (stages: {', '.join(sorted(known))})")


def cmd_validate(args: argparse.Namespace) -> int:
    from slmkit.cli import recipe_path
    from slmkit.recipe import load_plan

    plan = load_plan(recipe_path(args.recipe), args.overrides, args.runs_dir)
    print(f"ok: recipe '{plan.name}' with {len(plan.stages)} stages: "
          + " → ".join(f"{s.name}({s.stage})" for s in plan.stages))
    return 0


def cmd_show_config(args: argparse.Namespace) -> int:
    from slmkit.cli import recipe_path

    if args.stage:
        _print_fields(args.stage)
        return 0
    if not args.recipe:
        raise ConfigError("show-config: give a recipe, or --stage NAME")
    from slmkit.recipe import load_plan, resolved_yaml

    print(resolved_yaml(load_plan(recipe_path(args.recipe), args.overrides, args.runs_dir)), end="")
    return 0


def _print_fields(stage: str) -> None:
    """A copy-pasteable YAML stage entry: every field with its default, type and doc."""
    from slmkit.config import describe
    from slmkit.stages import load_stage

    module = load_stage(stage)
    print(f"# stage '{stage}' ({module.__name__}): every field, its default, type and meaning")
    print(f"- stage: {stage}")
    for name, tp, default, doc in describe(module.Config):
        print(f"  {name + ': ' + default:<40} # {tp}: {doc}")
    moved = getattr(module, "OUTPUT_FIELDS", {})
    print("# outputs: " + ", ".join(f"{k} -> <stage folder>/{v}" + (f" (or {moved[k]}, when set)" if k in moved else "")
                                    for k, v in module.OUTPUTS.items()))


def cmd_list(args: argparse.Namespace) -> int:
    what = args.what or "all"
    if what in ("stages", "all"):
        from slmkit.stages import STAGES

        print("stages: " + ", ".join(STAGES))
    if what in ("tasks", "all"):
        from slmkit.data.tasks import TASKS

        print("tasks: " + ", ".join(TASKS))
    if what in ("recipes", "all"):
        print("recipes: " + ", ".join(_shipped_recipes()))
    if what in ("commands", "all"):
        from slmkit.cli import COMMANDS

        print("commands: " + (", ".join(COMMANDS) or "(none)"))
    if what in ("archs", "all"):
        _print_archs()
    return 0


def _shipped_recipes() -> list[str]:
    from importlib import resources

    folder = Path(str(resources.files("slmkit.recipes")))
    return sorted(p.stem for p in folder.glob("*.yaml"))


def _print_archs() -> None:
    from rich.table import Table

    from slmkit.models.build import param_count
    from slmkit.models.registry import ARCHITECTURES, get_arch

    table = Table(title="architectures and presets (parameters at each preset's default vocabulary)")
    for col in ("arch", "kind", "preset", "vocab", "parameters"):
        table.add_column(col)
    for arch in ARCHITECTURES:
        module = get_arch(arch)
        for preset in module.PRESETS:
            n = param_count(arch, preset)
            vocab = module.PRESETS[preset].get("vocab_size", module.DEFAULT_VOCAB)
            table.add_row(arch, module.KIND, preset, str(vocab), _human(n))
    _console().print(table)


def _human(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


def cmd_quickstart(args: argparse.Namespace) -> int:
    from slmkit.cli import recipe_path

    ns = argparse.Namespace(recipe=str(recipe_path("quickstart")), overrides=args.overrides,
                            runs_dir=args.runs_dir, force=None, only=None)
    return cmd_run(ns)


def cmd_report(args: argparse.Namespace) -> int:
    from slmkit.report import write_report

    md, html = write_report(args.run_dir)
    print(f"report: {md}\n        {html}")
    return 0


def cmd_stage(args: argparse.Namespace) -> int:
    """A stage verb: its fields from --config and key=value pairs, run as a one-stage recipe."""
    from slmkit.config import load_yaml
    from slmkit.recipe import resolve, run_plan

    body: dict[str, Any] = {}
    lines: dict = {}
    if args.config:
        body, lines = load_yaml(args.config)
        body = body or {}
        lines = {("stages", 0, *k): v for k, v in lines.items()}
    data = {"schema_version": 1, "name": args.name, "stages": [{"stage": args.command, **body}]}
    overrides = [f"{args.command}.{o}" for o in args.overrides]
    plan = resolve(data, lines, args.config or "command line", overrides, Path(args.runs_dir))
    results = run_plan(plan, force=args.force)
    result = results[plan.stages[0].name]
    for key, value in result.get("metrics", {}).items():
        print(f"{key}: {value}")
    for key, value in result.get("outputs", {}).items():
        print(f"{key} -> {value}")
    return 0
