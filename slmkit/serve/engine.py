"""The engine seam of the server: what the HTTP layer needs from a model runtime, and the parts every
engine shares (a worker thread fed by a queue, per-row sampling, incremental detokenisation with stop
strings).

An engine takes already-tokenised prompts (the HTTP layer applies the chat template and checks limits),
runs them on one worker thread so the event loop never blocks on the model, and reports each choice's
progress as ``Event``s through a thread-safe ``sink``. Text is only emitted once it can no longer become
part of a stop string or an unfinished UTF-8 character, so a streamed answer never shows text that the
final answer would not contain. A choice ends with ``finish_reason`` ``stop`` (EOS or a stop string),
``length`` (``max_tokens``) or ``abort`` (cancelled or engine shut down: the HTTP layer turns that into
an error, never a normal end).

Engines (``ENGINES``: kind -> "module:loader"): ``torch`` — a transformers model; decoder-only models get
iteration-level (continuous) batching with a KV cache (``continuous.py``), encoder–decoder models
request-level batching (``batched.py``); ``ct2`` — a CTranslate2 model folder (the CPU deployment
runtime), request-level batching. A new runtime adds a loader ``(path, **options) -> Engine`` here.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from slmkit.errors import ConfigError

log = logging.getLogger("slmkit.serve")

ENGINES: dict[str, str] = {
    "torch": "slmkit.serve.continuous:load_torch_engine",
    "ct2": "slmkit.serve.batched:load_ct2_engine",
}


@dataclass(frozen=True)
class Sampling:
    """Decoding settings of one request (validated by the HTTP layer)."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass
class Event:
    """New text of one choice; ``finish_reason`` is set on the choice's last event only."""

    index: int
    text: str
    finish_reason: str | None = None
    n_tokens: int = 0


@dataclass
class Ticket:
    """One submitted request: ``n`` choices of one prompt, reported through ``sink``."""

    prompt: list[int]
    sampling: Sampling
    n: int
    sink: Callable[[Event], None]
    cancelled: bool = False
    submitted: float = field(default_factory=time.perf_counter)


class TextTracker:
    """Incremental detokenisation of one choice, with stop strings and a token budget."""

    def __init__(self, tokenizer: Any, sampling: Sampling, eos_ids: set[int]):
        self.tokenizer = tokenizer
        self.sampling = sampling
        self.eos_ids = eos_ids
        self.tokens: list[int] = []
        self.sent = 0  # characters already emitted
        self.n_tokens = 0
        self.finish_reason: str | None = None

    def push(self, token: int) -> str:
        """Add one generated token; returns the text that is now safe to emit (sets ``finish_reason``)."""
        self.n_tokens += 1
        if token in self.eos_ids:
            self.finish_reason = "stop"
            return self._flush(self._text())
        self.tokens.append(token)
        text = self._text()
        cut = _first_stop(text, self.sampling.stop, max(0, self.sent - _longest(self.sampling.stop)))
        if cut is not None:
            self.finish_reason = "stop"
            return self._flush(text[:cut])
        if self.n_tokens >= self.sampling.max_tokens:
            self.finish_reason = "length"
            return self._flush(text)
        safe = len(text) - _holdback(text, self.sampling.stop)
        delta, self.sent = text[self.sent:safe], max(self.sent, safe)
        return delta

    def close(self, reason: str) -> str:
        """End the choice for ``reason`` (the runtime stopped it); returns the text still held back."""
        self.finish_reason = reason
        return self._flush(self._text())

    def _text(self) -> str:
        return self.tokenizer.decode(self.tokens, skip_special_tokens=True)

    def _flush(self, text: str) -> str:
        delta, self.sent = text[self.sent:], len(text)
        return delta


def _first_stop(text: str, stops: tuple[str, ...], start: int) -> int | None:
    hits = [pos for s in stops if (pos := text.find(s, start)) != -1]
    return min(hits) if hits else None


def _longest(stops: tuple[str, ...]) -> int:
    return max((len(s) for s in stops), default=0)


def _holdback(text: str, stops: tuple[str, ...]) -> int:
    """Characters at the end of ``text`` that must wait: an unfinished UTF-8 character (decoded as
    U+FFFD) or the beginning of a stop string."""
    keep = len(text) - len(text.rstrip("\ufffd"))
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                keep = max(keep, k)
                break
    return keep


def sample_rows(logits: Any, params: list[Sampling], generators: list[Any]) -> list[int]:
    """One token per row: argmax at temperature 0, else temperature + nucleus (top-p) sampling drawn
    from the row's own seeded generator, so a request's samples do not depend on its batch neighbours."""
    import torch

    chosen = logits.argmax(dim=-1).tolist()
    for r, (p, gen) in enumerate(zip(params, generators)):
        if p.temperature <= 0:
            continue
        probs = torch.softmax(logits[r].float() / p.temperature, dim=-1)
        if p.top_p < 1.0:
            sorted_p, order = probs.sort(descending=True)
            drop = (sorted_p.cumsum(0) - sorted_p) >= p.top_p  # mass before a token already reaches top_p
            sorted_p[drop] = 0.0
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_p)
        chosen[r] = int(torch.multinomial(probs, 1, generator=gen))
    return chosen


def make_generator(sampling: Sampling, index: int) -> Any:
    """The random generator of choice ``index``: seeded by ``seed + index`` when a seed is given."""
    import torch

    gen = torch.Generator()
    if sampling.seed is None:
        gen.seed()
    else:
        gen.manual_seed(sampling.seed + index)
    return gen


def eos_ids_of(tokenizer: Any, model_config: Any = None) -> set[int]:
    """Every token id that ends a sequence: the tokenizer's EOS and the model's generation config EOS."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    extra = getattr(model_config, "eos_token_id", None)
    ids.update(extra if isinstance(extra, list) else [extra] if extra is not None else [])
    return ids


class ThreadedEngine:
    """Base of every engine: a request queue drained by one worker thread running ``_loop``.

    ``max_batch`` caps the rows (choices) decoded together; ``batch_wait_ms`` is how long an idle engine
    waits after a first request for others to join its batch.
    """

    kind = "base"

    def __init__(self, tokenizer: Any, max_context: int, max_batch: int = 32, batch_wait_ms: float = 5.0):
        self.tokenizer = tokenizer
        self.max_context = max_context
        self.max_batch = max_batch
        self.batch_wait = batch_wait_ms / 1000
        self._queue: queue.Queue[Ticket | None] = queue.Queue()
        self._pending: deque[Ticket] = deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"slmkit-{self.kind}-engine", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def submit(self, prompt: list[int], sampling: Sampling, n: int, sink: Callable[[Event], None]) -> Ticket:
        """Queue one request; its events go to ``sink`` (called from the worker thread)."""
        ticket = Ticket(prompt, sampling, n, sink)
        if not self.alive:
            _abort(ticket)
        else:
            self._queue.put(ticket)
        return ticket

    def queued(self) -> int:
        return self._queue.qsize() + len(self._pending)

    def stop(self) -> None:
        """Ask the worker to stop without waiting; every unfinished choice then ends with ``abort``."""
        self._stop.set()
        self._queue.put(None)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the worker and wait for it."""
        self.stop()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._loop_once()
                except Exception as err:  # noqa: BLE001 - fail the batch in flight, keep serving
                    self.error = err
                    log.exception("engine step failed; its requests end with an error")
                    self._abort_active()
        finally:
            self._stop.set()
            self._abort_active()
            self._abort_all()

    def _loop_once(self) -> None:
        """Admit waiting requests and advance generation by one step (or one batch)."""
        raise NotImplementedError

    def _abort_active(self) -> None:
        """End every choice being generated with ``abort`` and forget it."""
        raise NotImplementedError

    def _abort_all(self) -> None:
        self._drain()
        for ticket in self._pending:
            _abort(ticket)
        self._pending.clear()

    def take(self, room: int, block: bool) -> list[Ticket]:
        """Tickets whose choices fit in ``room`` rows; when ``block``, wait for a first one, then up to
        ``batch_wait`` for more to join it (the dynamic-batching window)."""
        self._drain()
        if block and not self._pending:
            self._wait(None)
            if self._pending and self.batch_wait:
                self._wait(time.perf_counter() + self.batch_wait)
        return self._fit(room)

    def _drain(self) -> None:
        while True:
            try:
                ticket = self._queue.get_nowait()
            except queue.Empty:
                return
            if ticket is not None:
                self._pending.append(ticket)

    def _wait(self, deadline: float | None) -> None:
        """Without a deadline: block until a ticket arrives. With one: gather tickets until the deadline
        passes or a full batch waits. Both return early when the engine stops."""
        while not self._stop.is_set():
            left = 0.1 if deadline is None else deadline - time.perf_counter()
            if left <= 0 or (deadline and sum(t.n for t in self._pending) >= self.max_batch):
                return
            try:
                ticket = self._queue.get(timeout=min(left, 0.1))
            except queue.Empty:
                continue
            if ticket is not None:
                self._pending.append(ticket)
                if deadline is None:
                    return

    def _fit(self, room: int) -> list[Ticket]:
        got = []
        while self._pending and (self._pending[0].cancelled or self._pending[0].n <= room):
            ticket = self._pending.popleft()
            if not ticket.cancelled:
                got.append(ticket)
                room -= ticket.n
        return got


def _abort(ticket: Ticket) -> None:
    for i in range(ticket.n):
        ticket.sink(Event(i, "", "abort"))


def load_engine(kind: str, path: str, **options: Any) -> Any:
    """Build (not start) the engine of ``kind`` for the model at ``path``."""
    from slmkit.registry import resolve

    return resolve(ENGINES, kind, "engine", ConfigError)(path, **options)
