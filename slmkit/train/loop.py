"""The one training loop every method uses, on ``accelerate.Accelerator``.

AdamW, linear warm-up then cosine (or constant) learning rate, gradient accumulation, clipping, periodic
evaluation, checkpoints with exact resume and a rich progress bar with loss and tokens/s. Running it under
``accelerate launch`` gives DDP on several GPUs with no change.

Exact accumulation: a method's loss function returns a *sum* over its units (target tokens for SFT,
pairs for DPO) and ``count_fn`` says how many units a micro-batch holds. Before any backward pass the loop
counts the units of the whole optimizer step (all micro-batches, all processes) and divides each
micro-batch's sum by that total, so 1 × B and k × B/k give the same gradient up to float rounding.

Data order is a pure function of (seed, position): epoch e is a seeded permutation and micro-batch m
covers stream positions [m·b, (m+1)·b). Resuming at step s therefore needs nothing but s.
Reads: encoded examples. Writes: ``metrics.jsonl`` and ``checkpoint/`` in the stage folder.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from slmkit.config import field
from slmkit.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class TrainArgs:
    steps: int = field(200, doc="optimizer steps")
    batch_size: int = field(16, doc="examples per optimizer step, over all micro-batches and processes")
    grad_accum: int = field(1, doc="micro-batches per optimizer step (per process)")
    lr: float = field(1e-3, doc="peak learning rate")
    weight_decay: float = field(0.0, doc="AdamW weight decay (not applied to norms and biases)")
    warmup_steps: int = field(10, doc="linear warm-up steps")
    lr_schedule: Literal["cosine", "constant"] = field("cosine", doc="learning-rate shape after warm-up")
    max_grad_norm: float = field(1.0, doc="gradient clipping norm (0 disables)")
    max_length: int = field(512, doc="maximum tokens per example (per side for encoder–decoder)")
    eval_every: int = field(0, doc="evaluate the eval loss every N steps (0: only at the end)")
    checkpoint_every: int = field(0, doc="save a resumable checkpoint every N steps (0: never)")
    log_every: int = field(10, doc="log training metrics every N steps")
    seed: int = field(0, doc="seed for initialisation and data order")
    mixed_precision: Literal["no", "bf16", "fp16"] = field("no", doc="accelerate mixed precision")


LossFn = Callable[[Any, dict[str, Any]], tuple[Any, dict[str, float]]]


@dataclass
class Job:
    """What a method hands the loop: examples, how to batch them, and how to score a batch."""

    examples: list[Any]
    collate: Callable[[list[Any]], dict[str, Any]]
    loss_fn: LossFn
    count_fn: Callable[[dict[str, Any]], int]
    eval_examples: list[Any] | None = None
    order: Callable[[int, int], list[int]] | None = None
    """Example indices at stream positions [start, start+size), a pure function of the position (so resume
    stays exact); None: a seeded permutation per epoch (``stream_indices``). Data schedules plug in here."""


def stream_indices(n: int, seed: int, start: int, size: int, cache: dict[int, list[int]]) -> list[int]:
    """Example indices at stream positions [start, start+size): seeded permutation per epoch."""
    out = []
    for pos in range(start, start + size):
        epoch = pos // n
        if epoch not in cache:
            perm = list(range(n))
            random.Random(seed * 1_000_003 + epoch).shuffle(perm)
            cache.clear()
            cache[epoch] = perm
        out.append(cache[epoch][pos % n])
    return out


def train(model: Any, job: Job, args: TrainArgs, run_dir: Path, fingerprint: str = "",
          on_step: Callable[[int], None] | None = None) -> tuple[Any, dict[str, float]]:
    """Train ``model`` in place; returns (unwrapped model, summary metrics)."""
    import torch
    from accelerate import Accelerator

    from slmkit.artifacts import MetricsLog
    from slmkit.train.checkpoint import load_checkpoint

    if not job.examples:
        raise ConfigError("training set is empty")
    acc = Accelerator(mixed_precision=args.mixed_precision)
    micro = _micro_batch_size(args, acc.num_processes)
    optimizer = _optimizer(model, args)
    scheduler = _scheduler(optimizer, args)
    model, optimizer = acc.prepare(model, optimizer)
    log = MetricsLog(run_dir / "metrics.jsonl")
    state = load_checkpoint(run_dir / "checkpoint", model=acc.unwrap_model(model), optimizer=optimizer,
                            scheduler=scheduler, fingerprint=fingerprint)
    start = state["step"] if state else 0
    log.truncate_after(start)
    loop = _Loop(acc, model, optimizer, scheduler, job, args, micro, log, run_dir, fingerprint)
    summary = loop.run(start, on_step)
    return acc.unwrap_model(model), summary


def _micro_batch_size(args: TrainArgs, world: int) -> int:
    per = args.grad_accum * world
    if args.batch_size % per:
        raise ConfigError(f"batch_size {args.batch_size} must be divisible by grad_accum × processes = {per}")
    return args.batch_size // per


def _optimizer(model: Any, args: TrainArgs) -> Any:
    import torch

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), eps=1e-8)


def _scheduler(optimizer: Any, args: TrainArgs) -> Any:
    import torch

    def factor(step: int) -> float:
        if step < args.warmup_steps:
            return (step + 1) / max(1, args.warmup_steps)
        if args.lr_schedule == "constant":
            return 1.0
        progress = (step - args.warmup_steps) / max(1, args.steps - args.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class _Loop:
    """State of one training run; methods are the steps of the loop."""

    def __init__(self, acc, model, optimizer, scheduler, job, args, micro, log, run_dir, fingerprint):
        self.acc, self.model, self.optimizer, self.scheduler = acc, model, optimizer, scheduler
        self.job, self.args, self.micro, self.log = job, args, micro, log
        self.run_dir, self.fingerprint = run_dir, fingerprint
        self.cache: dict[int, list[int]] = {}
        self.last: dict[str, float] = {}

    def run(self, start: int, on_step: Callable[[int], None] | None) -> dict[str, float]:
        from slmkit.progress import progress

        args, tokens, began = self.args, 0, time.time()
        self.model.train()
        with progress() as bar:
            task = bar.add_task("training", total=args.steps, completed=start, info="")
            for step in range(start, args.steps):
                loss, n_tok, metrics = self.step(step)
                tokens += n_tok
                rate = tokens / max(1e-9, time.time() - began)
                self.last = {"loss": loss, "tokens_per_s": rate, **metrics}
                if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
                    self.log.log(step=step + 1, loss=loss, lr=self.scheduler.get_last_lr()[0],
                                 tokens_per_s=rate, **metrics)
                if args.eval_every and (step + 1) % args.eval_every == 0 and step + 1 < args.steps:
                    self.evaluate(step + 1)
                if args.checkpoint_every and (step + 1) % args.checkpoint_every == 0:
                    self.checkpoint(step + 1)
                bar.update(task, advance=1, info=f"loss {loss:.4f}  {rate:,.0f} tok/s")
                if on_step:
                    on_step(step + 1)
        summary = {"train_loss": self.last.get("loss", float("nan")), "steps": args.steps,
                   "tokens_per_s": self.last.get("tokens_per_s", 0.0)}
        eval_loss = self.evaluate(args.steps)
        if eval_loss is not None:
            summary["eval_loss"] = eval_loss
        return summary

    def step(self, step: int) -> tuple[float, int, dict[str, float]]:
        """One optimizer step over ``grad_accum`` micro-batches; returns (mean loss, tokens, metrics)."""
        import torch

        acc, k = self.acc, self.args.grad_accum
        batches = [self.batch(step, j) for j in range(k)]
        counts = torch.tensor(float(sum(self.job.count_fn(b) for b in batches)), device=acc.device)
        total = acc.reduce(counts, reduction="sum").item()
        loss_total, metrics = 0.0, {}
        for j, batch in enumerate(batches):
            ctx = acc.no_sync(self.model) if j < k - 1 else contextlib.nullcontext()
            with ctx, acc.autocast():
                loss_sum, m = self.job.loss_fn(self.model, batch)
                acc.backward(loss_sum * acc.num_processes / max(total, 1.0))
            loss_total += loss_sum.item()
            for key, v in m.items():
                metrics[key] = metrics.get(key, 0.0) + v / k
        if self.args.max_grad_norm:
            norm = acc.clip_grad_norm_(self.model.parameters(), self.args.max_grad_norm)
            metrics["grad_norm"] = float(norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        n_tok = sum(int(b["attention_mask"].sum()) + int(b.get("decoder_attention_mask", b["attention_mask"][:0]).sum())
                    for b in batches)
        return loss_total * acc.num_processes / max(total, 1.0), n_tok, metrics

    def batch(self, step: int, j: int) -> dict[str, Any]:
        acc = self.acc
        m = (step * self.args.grad_accum + j) * acc.num_processes + acc.process_index
        if self.job.order is not None:
            idx = self.job.order(m * self.micro, self.micro)
        else:
            idx = stream_indices(len(self.job.examples), self.args.seed, m * self.micro, self.micro, self.cache)
        batch = self.job.collate([self.job.examples[i] for i in idx])
        return {k: (v.to(acc.device) if hasattr(v, "to") else v) for k, v in batch.items()}

    def evaluate(self, step: int) -> float | None:
        """Mean loss per unit on the eval examples (all of them, in order)."""
        import torch

        if not self.job.eval_examples:
            return None
        self.model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(self.job.eval_examples), self.micro):
                batch = self.job.collate(self.job.eval_examples[i:i + self.micro])
                batch = {k: (v.to(self.acc.device) if hasattr(v, "to") else v) for k, v in batch.items()}
                with self.acc.autocast():
                    loss_sum, _ = self.job.loss_fn(self.model, batch)
                total += loss_sum.item()
                count += self.job.count_fn(batch)
        self.model.train()
        value = total / max(count, 1)
        self.log.log(step=step, eval_loss=value)
        return value

    def checkpoint(self, step: int) -> None:
        from slmkit.train.checkpoint import save_checkpoint

        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            save_checkpoint(self.run_dir / "checkpoint", model=self.acc.unwrap_model(self.model),
                            optimizer=self.optimizer, scheduler=self.scheduler, step=step,
                            fingerprint=self.fingerprint)


