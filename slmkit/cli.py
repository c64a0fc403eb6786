"""The ``slmkit`` command line: dispatch only.

``run | validate | show-config | list | quickstart | report`` work on recipes; every registered stage is
also a verb (``slmkit sft train_file=... preset=tiny``) that runs a one-stage recipe; feature commands
(``bench``, ``serve``, ...) register in ``COMMANDS`` as ``("module:function", help)``, the function taking
``argv``. Nothing heavy is imported until a command runs, so ``slmkit --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from slmkit.errors import SlmkitError
from slmkit.stages import STAGES

COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("slmkit.serve.cli:main", "serve a model over an OpenAI-compatible HTTP API (127.0.0.1 by default)"),
    "eval": ("slmkit.eval.cli:eval_main", "evaluate models on reasoning tasks: strategies x scoring methods x repeats"),
    "leaderboard": ("slmkit.eval.cli:leaderboard_main", "print the accuracy tables of an eval results store"),
    "bench": ("slmkit.bench.cli:main", "latency, throughput and memory of models on this machine"),
    "merge": ("slmkit.merge.command:main", "merge models from a mergekit-style YAML config"),
    "guard": ("slmkit.guard.cli:main", "prompt guard: train, check prompts, evaluate"),
}
"""Feature commands: verb -> ("module:function", one line for ``slmkit --help``); the function takes the
remaining argv and returns an exit code."""


def recipe_path(name_or_path: str) -> Path:
    """A recipe file, or the name of a recipe shipped with slmkit (``quickstart``, ``orca_math``, ...)."""
    path = Path(name_or_path)
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return path
    from importlib import resources

    shipped = Path(str(resources.files("slmkit.recipes"))) / f"{name_or_path}.yaml"
    if shipped.exists():
        return shipped
    return path


def _recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe YAML file, or the name of a shipped recipe")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. sft.lr=3e-4")
    p.add_argument("--runs-dir", default="runs", help="folder that holds run folders (default: runs)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slmkit", description="Build, train, evaluate and serve small "
                                     "language models. Each recipe stage is also a verb.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("run", help="run a recipe (completed stages with unchanged inputs are reused)")
    _recipe_args(p)
    p.add_argument("--force", nargs="*", metavar="STAGE", help="redo these stages (all if none named)")
    p.add_argument("--only", nargs="+", metavar="STAGE", help="run only these stages")
    _recipe_args(sub.add_parser("validate", help="check a recipe without running it"))
    p = sub.add_parser("show-config", help="print the fully resolved recipe, or a stage's fields")
    p.add_argument("recipe", nargs="?", help="recipe file or shipped recipe name")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--stage", help="print the fields of a stage type instead")
    p = sub.add_parser("list", help="list stages, architectures (with parameter counts), tasks, recipes")
    p.add_argument("what", nargs="?", choices=["stages", "archs", "tasks", "recipes", "commands"])
    p = sub.add_parser("quickstart", help="generate math data, train a tokenizer and a tiny model, evaluate")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--runs-dir", default="runs")
    p = sub.add_parser("report", help="(re)write report.md and report.html for a run folder")
    p.add_argument("run_dir")
    for verb, (_, line) in COMMANDS.items():
        sub.add_parser(verb, help=f"{line} (see slmkit {verb} --help)", add_help=False)
    for stage in STAGES:
        if stage in COMMANDS:  # the feature command of that name wraps the stage (slmkit eval, slmkit merge)
            continue
        sp = sub.add_parser(stage, help=f"run the '{stage}' stage alone (key=value fields)")
        sp.add_argument("overrides", nargs="*", help="field=value pairs")
        sp.add_argument("--config", help="YAML file with the stage's fields")
        sp.add_argument("--runs-dir", default="runs")
        sp.add_argument("--name", default=stage, help="run name (folder under runs/)")
        sp.add_argument("--force", action="store_true", help="redo even if an identical run exists")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        module, func = COMMANDS[argv[0]][0].split(":")
        return _guard(lambda: getattr(importlib.import_module(module), func)(argv[1:]))
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may come after options (argparse stops collecting positionals at an option)
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = list(args.overrides or []) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        build_parser().print_help()
        return 0
    from slmkit import commands

    handler = getattr(commands, "cmd_" + args.command.replace("-", "_"), None)
    if handler is None:
        return _guard(lambda: commands.cmd_stage(args))
    return _guard(lambda: handler(args))


def _guard(call) -> int:
    """Run a command; user-fixable errors print one clear line instead of a traceback."""
    try:
        return call() or 0
    except SlmkitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
