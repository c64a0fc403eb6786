"""Iteration-level ("continuous") batching of a decoder-only transformers model with a KV cache.

The scheduling of Orca (Yu et al., OSDI 2022) that vLLM and TGI use, without paging: one running batch
whose rows are requests' choices; at every decoding step new requests join (their prompts are prefilled
together, left-padded, and their KV cache is concatenated to the running one after left-padding both to
one length) and finished or cancelled rows leave (their cache rows are dropped, and cache columns that
every remaining row masks are trimmed). A request therefore never waits for a batch to finish, and a
batch never waits for its slowest member. Position ids are computed per row from its attention mask, as
``generate()`` does for left padding, so a row's tokens are what it would produce alone (up to float
rounding of batched matrix products; greedy outputs match ``generate()``, which the tests check).

Sampling is per row (temperature, top-p, its own seeded generator); stop strings, ``max_tokens`` and EOS
end rows individually. Models whose cache is not a plain per-layer tensor pair (sliding-window, hybrid
or recurrent layers) and encoder–decoder models use request-level batching (``batched.py``) instead.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from slmkit.serve.engine import (Event, Sampling, TextTracker, ThreadedEngine, Ticket, eos_ids_of, make_generator,
                                 sample_rows)


@dataclass
class Row:
    """One choice of one request in the running batch."""

    ticket: Ticket
    index: int
    tracker: TextTracker
    generator: Any


class ContinuousEngine(ThreadedEngine):
    """See the module docstring. State: ``cache`` (B rows × T columns), ``mask`` (B, T), the next
    ``positions`` (B,) and the ``last`` sampled token of each row (B,), which is not yet in the cache."""

    kind = "continuous"

    def __init__(self, model: Any, tokenizer: Any, max_batch: int = 32, batch_wait_ms: float = 5.0):
        super().__init__(tokenizer, model.config.max_position_embeddings, max_batch, batch_wait_ms)
        self.model = model.eval()
        self.eos = eos_ids_of(tokenizer, getattr(model, "generation_config", None))
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.x
        self._keep = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        self.rows: list[Row] = []
        self.cache: Any = None
        self.mask: Any = None
        self.positions: Any = None
        self.last: Any = None

    def _loop_once(self) -> None:
        import torch

        with torch.inference_mode():
            new = self.take(self.max_batch - len(self.rows), block=not self.rows)
            if new:
                self._admit(new)
            self._keep_rows([i for i, r in enumerate(self.rows) if not r.ticket.cancelled])
            if self.rows:
                self._step()

    def _forward(self, ids: Any, mask: Any, positions: Any, cache: Any) -> tuple[Any, Any]:
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         **{self._cache_kw: cache}, **self._keep)
        return out.logits[:, -1, :], getattr(out, "cache", None) or getattr(out, "past_key_values", None)

    def _admit(self, tickets: list[Ticket]) -> None:
        """Prefill the new requests together, sample their first tokens, join them to the batch."""
        import torch

        from slmkit.models.generate import pad_batch

        rows = [Row(t, i, TextTracker(self.tokenizer, t.sampling, self.eos), make_generator(t.sampling, i))
                for t in tickets for i in range(t.n)]
        ids, mask = pad_batch([r.ticket.prompt for r in rows], self.tokenizer.pad_token_id or 0, left=True)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits, cache = self._forward(ids, mask, positions, None)
        first = self._advance(rows, logits)
        self._join(rows, cache, mask, mask.sum(-1), torch.tensor(first, dtype=torch.long))

    def _step(self) -> None:
        """One decoding step for every running row."""
        import torch

        self.mask = torch.cat([self.mask, self.mask.new_ones((len(self.rows), 1))], dim=1)
        logits, self.cache = self._forward(self.last[:, None], self.mask, self.positions[:, None], self.cache)
        self.positions = self.positions + 1
        self.last = torch.tensor(self._advance(self.rows, logits), dtype=torch.long)
        self._keep_rows([i for i, r in enumerate(self.rows) if r.tracker.finish_reason is None])

    def _advance(self, rows: list[Row], logits: Any) -> list[int]:
        """Sample one token per row and report the new text; finished rows are reported as such."""
        tokens = sample_rows(logits, [r.ticket.sampling for r in rows], [r.generator for r in rows])
        for row, token in zip(rows, tokens):
            delta = row.tracker.push(token)
            if delta or row.tracker.finish_reason:
                row.ticket.sink(Event(row.index, delta, row.tracker.finish_reason, row.tracker.n_tokens))
        return tokens

    def _join(self, rows: list[Row], cache: Any, mask: Any, positions: Any, last: Any) -> None:
        """Append prefilled rows to the running batch, left-padding both caches to one length."""
        import torch

        if self.rows:
            width = max(self.mask.shape[1], mask.shape[1])
            layers = [(torch.cat([_pad_kv(a.keys, width), _pad_kv(b.keys, width)]),
                       torch.cat([_pad_kv(a.values, width), _pad_kv(b.values, width)]))
                      for a, b in zip(self.cache.layers, cache.layers)]
            cache = type(cache)(layers)
            mask = torch.cat([_pad_mask(self.mask, width), _pad_mask(mask, width)])
            positions = torch.cat([self.positions, positions])
            last = torch.cat([self.last, last])
        self.rows, self.cache, self.mask, self.positions, self.last = self.rows + rows, cache, mask, positions, last
        self._keep_rows([i for i, r in enumerate(self.rows) if r.tracker.finish_reason is None])

    def _keep_rows(self, keep: list[int]) -> None:
        """Drop the other rows; trim cache columns that no remaining row attends to."""
        import torch

        if len(keep) == len(self.rows):
            return
        if not keep:
            self.rows, self.cache, self.mask, self.positions, self.last = [], None, None, None, None
            return
        idx = torch.tensor(keep, dtype=torch.long)
        self.rows = [self.rows[i] for i in keep]
        self.mask, self.positions, self.last = self.mask[idx], self.positions[idx], self.last[idx]
        self.cache.batch_select_indices(idx)
        empty = int((self.mask.sum(0) == 0).long().cumprod(0).sum())  # leading columns masked for all rows
        if empty:
            self.mask = self.mask[:, empty:]
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[..., empty:, :], layer.values[..., empty:, :]

    def _abort_active(self) -> None:
        for row in self.rows:
            if row.tracker.finish_reason is None:
                row.ticket.sink(Event(row.index, "", "abort", row.tracker.n_tokens))
        self.rows, self.cache, self.mask, self.positions, self.last = [], None, None, None, None


def _pad_kv(x: Any, width: int) -> Any:
    import torch.nn.functional as F

    return F.pad(x, (0, 0, width - x.shape[-2], 0))


def _pad_mask(x: Any, width: int) -> Any:
    import torch.nn.functional as F

    return F.pad(x, (width - x.shape[-1], 0))


def supports_continuous(model: Any) -> bool:
    """True for decoder-only models whose cache layers are plain growing key/value tensors."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    from slmkit.models.load import is_encoder_decoder

    if is_encoder_decoder(model):
        return False
    try:
        layers = DynamicCache(config=model.config).layers
    except Exception:  # noqa: BLE001 - any model the cache cannot describe takes the request-level path
        return False
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


def load_torch_engine(path: str, tokenizer: str | None = None, scheduler: str = "auto", max_batch: int = 32,
                      batch_wait_ms: float = 5.0, threads: int = 0, **_: Any) -> ThreadedEngine:
    """A transformers model (folder or hub id): continuous batching where supported, else request-level
    (``scheduler``: auto, continuous or request). ``threads`` > 0 sets torch's intra-op threads: tiny
    models gain nothing from more than one, and on an oversubscribed CPU every parallel region waits
    for a descheduled thread (measured here: 10x slower decoding with 2 threads on a busy 2-core box)."""
    import torch

    from slmkit.errors import ConfigError
    from slmkit.models.load import load_model, load_tokenizer

    if scheduler not in ("auto", "continuous", "request"):
        raise ConfigError(f"scheduler '{scheduler}' is unknown (use auto, continuous or request)")
    if threads > 0:
        torch.set_num_threads(threads)
    model, tok = load_model(path), load_tokenizer(tokenizer or path)
    if scheduler == "request" or (scheduler == "auto" and not supports_continuous(model)):
        from slmkit.serve.batched import HFRunner, RequestBatchEngine

        return RequestBatchEngine(HFRunner(model, tok), tok, max_batch, batch_wait_ms)
    if not supports_continuous(model):
        raise ConfigError(f"'{path}': continuous batching needs a decoder-only model with a plain KV cache")
    return ContinuousEngine(model, tok, max_batch, batch_wait_ms)


__all__ = ["ContinuousEngine", "Sampling", "load_torch_engine", "supports_continuous"]
