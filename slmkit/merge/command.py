"""``slmkit merge CONFIG.yaml OUT``: run a mergekit-style merge file (one merge or a ``---`` chain).

``--dry-run`` checks the config against the models' headers and prints the plan without reading weights.
"""

from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="slmkit merge", description="Merge models from a mergekit-style "
                                     "YAML config (methods: slmkit.merge.MERGE_METHODS).")
    parser.add_argument("config", help="merge YAML (mergekit keys; several '---' documents with names for a chain)")
    parser.add_argument("out", help="output folder (replaced atomically)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random methods, as mergekit's --random-seed")
    parser.add_argument("--shard-size", default="2GB", help="largest output shard (default 2GB)")
    parser.add_argument("--device", default="cpu", help="device for the tensor arithmetic (default cpu)")
    parser.add_argument("--keep-intermediate", action="store_true", help="keep the outputs of earlier merges")
    parser.add_argument("--dry-run", action="store_true", help="check everything and print the plan; write nothing")
    args = parser.parse_args(argv)

    from slmkit.merge.config import read_merge_file
    from slmkit.merge.execute import merge

    plans = merge(read_merge_file(args.config), args.out, seed=args.seed, shard_size=args.shard_size,
                  device=args.device, keep_intermediate=args.keep_intermediate, dry_run=args.dry_run)
    for plan in plans:
        models = ", ".join(m.ref for m in plan.inputs)
        base = f" into {plan.base.ref}" if plan.base else ""
        print(f"{plan.label}: {plan.method.name}{base} of {models} — {len(plan.steps)} tensors, "
              f"{len(plan.layout)} shard(s) -> {plan.output}")
    print("checked (nothing written)" if args.dry_run else f"wrote {plans[-1].output}")
    return 0
