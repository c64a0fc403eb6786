"""Run planned merges: stream each tensor from the inputs' safetensors shards through the method into the
output shards, then write config, tokenizer, resolved config and model card — all in one atomic folder.

Peak memory is the tensors of one weight (one per input, plus float32 work copies) and never a whole model:
inputs are read with ``safe_open`` one tensor at a time and outputs go straight to disk (``writer``). The
random methods (DARE) draw from one ``torch.Generator`` per merge seeded with ``seed`` — mergekit's
``random_seed`` — in tensor-name order, so a seeded slmkit merge equals a seeded mergekit merge.
Reads: the input model folders. Writes: the output folder (and intermediates of a chain).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slmkit.artifacts import atomic_dir
from slmkit.errors import ModelError
from slmkit.merge.inputs import TOKENIZER_FILES, ModelFiles
from slmkit.merge.config import MergeDoc
from slmkit.merge.plan import MergePlan, Step
from slmkit.merge.writer import NAMES, ShardWriter


class Readers:
    """Open ``safe_open`` handles, one per (model folder, shard), opened on first use."""

    def __init__(self, stack: contextlib.ExitStack, device: str):
        self.stack, self.device, self.handles = stack, device, {}

    def get(self, model: ModelFiles, name: str, dtype: str | None) -> Any:
        from safetensors import safe_open

        import torch

        path = model.folder / model.tensors[name].file
        if path not in self.handles:
            self.handles[path] = self.stack.enter_context(safe_open(str(path), framework="pt"))
        tensor = self.handles[path].get_tensor(name).to(self.device)
        if dtype and tensor.is_floating_point():
            tensor = tensor.to(getattr(torch, dtype))
        return tensor


def merge_tensor(plan: MergePlan, step: Step, readers: Readers, generator: Any) -> Any:
    """The merged value of one output tensor."""
    import torch

    name, dtype = step.spec.name, plan.doc.config.dtype
    tensors = [readers.get(m, name, dtype) for m in plan.inputs]
    base = readers.get(plan.base, name, dtype) if plan.base else None
    if not step.floating:
        # Integer buffers (position ids, masks) cannot be averaged: they must agree and are copied.
        first = base if base is not None else tensors[0]
        if any(not torch.equal(first, t) for t in tensors):
            raise ModelError(f"{plan.label}: non-float tensor '{name}' differs between the models")
        return first
    with torch.no_grad():
        merged = plan.method(base, tensors, step.shared, step.per_model, generator)
    return merged.to(getattr(torch, NAMES[step.spec.dtype]))


def execute(plan: MergePlan, seed: int, device: str = "cpu", on_tensor: Callable[[str], None] | None = None,
            extra_files: dict[str, str] | None = None) -> Path:
    """Write ``plan.output`` (atomically: a failed merge leaves any previous output in place)."""
    import torch

    generator = torch.Generator(device).manual_seed(seed) if plan.method.stochastic else None
    with atomic_dir(plan.output) as tmp, contextlib.ExitStack() as stack:
        readers = Readers(stack, device)
        writer = ShardWriter(tmp, plan.layout)
        stack.callback(writer.abort)
        for step in plan.steps:
            writer.write(step.spec.name, merge_tensor(plan, step, readers, generator))
            if on_tensor:
                on_tensor(step.spec.name)
        writer.close()
        write_side_files(plan, tmp)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
    return plan.output


def write_side_files(plan: MergePlan, folder: Path) -> None:
    """config.json (dtype updated) and the tokenizer files of the tokenizer source."""
    (folder / "config.json").write_text(json.dumps(plan.out_config, indent=2, sort_keys=True) + "\n")
    for name in TOKENIZER_FILES:
        source = plan.tokenizer_from.folder / name
        if source.exists():
            shutil.copyfile(source, folder / name)


def run_merges(plans: list[MergePlan], seed: int, device: str = "cpu", keep_intermediate: bool = False) -> Path:
    """Execute a chain of plans in order; the last output also gets the resolved config and the model card."""
    import yaml

    from slmkit.merge.card import model_card, resolved_config
    from slmkit.progress import progress

    records = {"merge_config.yaml": yaml.safe_dump(resolved_config(plans, seed), sort_keys=False),
               "README.md": model_card(plans, seed)}
    with progress() as bar:
        task = bar.add_task("merging", total=sum(len(p.steps) for p in plans), info="")
        for i, plan in enumerate(plans):
            def advance(name: str, label: str = plan.label) -> None:
                bar.update(task, advance=1, info=f"{label}: {name}")

            execute(plan, seed, device, advance, records if i == len(plans) - 1 else None)
    if not keep_intermediate:
        for plan in plans[:-1]:
            shutil.rmtree(plan.output, ignore_errors=True)
    return plans[-1].output


def merge(docs: list[MergeDoc], output: str | Path, *, seed: int = 0, shard_size: str | int = "2GB",
          device: str = "cpu", keep_intermediate: bool = False, dry_run: bool = False) -> list[MergePlan]:
    """Plan (checking everything) and, unless ``dry_run``, run a merge or a chain of merges into ``output``.

    Intermediate outputs of a chain go to ``.<output>.intermediate/<name>`` beside ``output``.
    """
    from slmkit.errors import ConfigError
    from slmkit.merge.plan import plan_merges
    from slmkit.merge.writer import parse_size

    output = Path(output)
    try:
        size = parse_size(shard_size)
    except ValueError as err:
        raise ConfigError(f"shard_size: {err}") from None
    plans = plan_merges(docs, output, output.parent / f".{output.name}.intermediate", size)
    if not dry_run:
        run_merges(plans, seed, device, keep_intermediate)
        if not keep_intermediate:
            shutil.rmtree(output.parent / f".{output.name}.intermediate", ignore_errors=True)
    return plans
