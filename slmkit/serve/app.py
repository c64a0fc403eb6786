"""The HTTP layer of ``slmkit serve``: an OpenAI-compatible FastAPI app in front of an engine.

Routes: ``GET /health``, ``GET /metrics`` (Prometheus text), ``GET /v1/models[/{id}]``,
``POST /v1/completions`` and ``POST /v1/chat/completions`` (JSON or server-sent events). A request is
authorised (optional bearer key), read up to ``max_body_bytes``, validated (``protocol.py``), tokenised
(chat requests through the model's chat template), checked against the prompt, ``max_tokens``, ``n`` and
context limits, scored by the guard when one is configured, and handed to the engine; the engine's
events are gathered into one answer or forwarded as stream chunks. Bad requests get a 4xx with an
OpenAI-style error body; nothing the client sends can produce a 5xx.

Truncation is never disguised as success: a non-streaming answer is sent whole once every choice has
finished; a stream sets ``finish_reason`` only on a choice's last chunk and ends with ``data: [DONE]``
only when every choice finished; if generation is aborted (shutdown, engine failure, timeout) the stream
gets an ``error`` event and no ``[DONE]``, and a killed server leaves an incomplete chunked body, which
HTTP clients report as an error.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, AsyncIterator

from slmkit.serve.engine import Event, Sampling
from slmkit.serve.metrics import Metrics
from slmkit.serve.protocol import (ApiError, ChatRequest, CompletionRequest, chunk_body, completion_body, new_id,
                                   parse, usage, usage_chunk)

log = logging.getLogger("slmkit.serve")
ROUTES = ("/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions")


@dataclass(frozen=True, kw_only=True)
class ServeSettings:
    """Limits and identity of one server (the CLI fills it from its flags)."""

    model_name: str
    api_key: str | None = None
    max_body_bytes: int = 1 << 20
    max_prompt_tokens: int = 4096
    max_tokens: int = 1024
    max_n: int = 8
    max_prompts: int = 32
    max_queue: int = 1024
    request_timeout: float = 600.0


class Mailbox:
    """Hands engine events to the event loop: the engine thread posts, and the loop is woken at most once
    per batch of posts. One wake-up per decoding step for all requests, rather than one per token and
    request, matters: each wake-up is a GIL hand-over that can stall the engine thread for a whole
    switch interval while the loop runs."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.items: deque[tuple[Job, tuple[int, Event]]] = deque()
        self.pending = False

    def post(self, job: Job, item: tuple[int, Event]) -> None:
        self.items.append((job, item))
        if not self.pending:
            self.pending = True
            try:
                self.loop.call_soon_threadsafe(self._deliver)
            except RuntimeError:  # the event loop is gone (server stopped): nobody is listening
                pass

    def _deliver(self) -> None:
        self.pending = False
        while self.items:
            job, item = self.items.popleft()
            job.buffer.append(item)
            job.ready.set()


class Job:
    """The choices of one HTTP request; their events arrive through the server's mailbox."""

    def __init__(self, engine: Any, n: int, mailbox: Mailbox):
        self.engine, self.n, self.mailbox = engine, n, mailbox
        self.buffer: deque[tuple[int, Event]] = deque()  # touched by the event loop only
        self.ready = asyncio.Event()
        self.tickets: list[Any] = []
        self.open = 0

    def _push(self, item: tuple[int, Event]) -> None:
        self.mailbox.post(self, item)

    def submit(self, prompt_index: int, ids: list[int], sampling: Sampling) -> None:
        base = prompt_index * self.n
        self.open += self.n
        self.tickets.append(self.engine.submit(ids, sampling, self.n,
                                               lambda event: self._push((base + event.index, event))))

    def refuse(self, prompt_index: int, text: str) -> None:
        self.open += self.n
        for j in range(self.n):
            self._push((prompt_index * self.n + j, Event(j, text, "content_filter", 0)))

    async def events(self, timeout: float) -> AsyncIterator[tuple[int, Event]]:
        """Every event until all choices finished; an aborted choice or the deadline raises ApiError."""
        deadline = time.monotonic() + timeout
        while self.open:
            if not self.buffer:
                self.ready.clear()
                try:
                    await asyncio.wait_for(self.ready.wait(), deadline - time.monotonic())
                except asyncio.TimeoutError:
                    raise ApiError(504, f"generation did not finish within {timeout:g} s") from None
                continue
            index, event = self.buffer.popleft()
            if event.finish_reason == "abort":
                raise ApiError(503, "generation was interrupted (the server is shutting down or the engine "
                                    "failed); retry the request")
            self.open -= event.finish_reason is not None
            yield index, event

    def cancel(self) -> None:
        for ticket in self.tickets:
            ticket.cancelled = True


class Server:
    """Request handling; one instance per app."""

    def __init__(self, engine: Any, settings: ServeSettings, guard: Any = None):
        self.engine, self.guard = engine, guard
        self.settings = settings
        self.max_n = min(settings.max_n, engine.max_batch)
        self.max_prompt = min(settings.max_prompt_tokens, engine.max_context - 1)
        self.metrics = Metrics(lambda: float(engine.queued()))
        self.created = int(time.time())
        self.mailbox: Mailbox | None = None

    def authorize(self, request: Any) -> None:
        if not self.settings.api_key:
            return
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), self.settings.api_key.encode()):
            raise ApiError(401, "invalid or missing API key (send 'Authorization: Bearer <key>')", None,
                           "invalid_api_key")

    def model_card(self) -> dict[str, Any]:
        return {"id": self.settings.model_name, "object": "model", "created": self.created, "owned_by": "slmkit"}

    def check_model(self, name: str) -> None:
        if name != self.settings.model_name:
            raise ApiError(404, f"The model '{name}' does not exist (this server serves "
                                f"'{self.settings.model_name}')", "model", "model_not_found")

    async def serve(self, request: Any, chat: bool) -> Any:
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import JSONResponse, StreamingResponse

        self.authorize(request)
        body = await read_body(request, self.settings.max_body_bytes)
        req = parse(ChatRequest if chat else CompletionRequest, body)
        self.check_model(req.model)
        texts, prompts = await run_in_threadpool(self.encode_chat if chat else self.encode_prompts, req)
        sampling, n = self.sampling(req, prompts, chat)
        scores = await self.score(texts)
        if self.engine.queued() >= self.settings.max_queue:
            raise ApiError(503, "the server is overloaded; retry later", None, "overloaded")
        loop = asyncio.get_running_loop()
        if self.mailbox is None or self.mailbox.loop is not loop:
            self.mailbox = Mailbox(loop)
        job = Job(self.engine, n, self.mailbox)
        for i, ids in enumerate(prompts):
            if scores and self.guard.blocked(scores[i]):
                job.refuse(i, self.guard.refusal)
            else:
                job.submit(i, ids, sampling)
        self.metrics.prompt_tokens.inc(sum(len(p) for p in prompts))
        rid = new_id("chatcmpl" if chat else "cmpl")
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return StreamingResponse(self.stream(job, rid, chat, prompts, include_usage), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        answer = await self.collect(job, rid, chat, prompts)
        if scores:
            answer["guard"] = {"blocked": [self.guard.blocked(s) for s in scores], "scores": scores,
                               "threshold": self.guard.threshold}
        return JSONResponse(answer)

    def encode_prompts(self, req: CompletionRequest) -> tuple[list[str], list[list[int]]]:
        """Completion prompts as (texts, token ids); the tokenizer adds its special tokens (e.g. BOS)."""
        tok, raw = self.engine.tokenizer, req.prompt
        items = [raw] if isinstance(raw, str) or (raw and isinstance(raw[0], int)) else list(raw)
        if not items:
            raise ApiError(400, "'prompt' must not be empty", "prompt")
        if len(items) > self.settings.max_prompts:
            raise ApiError(400, f"'prompt' holds {len(items)} prompts; at most {self.settings.max_prompts} "
                                "per request", "prompt")
        texts, ids = [], []
        for item in items:
            if isinstance(item, str):
                texts.append(item)
                ids.append(tok(item, add_special_tokens=True)["input_ids"])
            else:
                if not item or max(item) >= len(tok):
                    raise ApiError(400, f"'prompt' token ids must be non-empty and below the vocabulary size "
                                        f"{len(tok)}", "prompt")
                texts.append(tok.decode(item, skip_special_tokens=True))
                ids.append(list(item))
        return texts, ids

    def encode_chat(self, req: ChatRequest) -> tuple[list[str], list[list[int]]]:
        """The conversation through the model's chat template; the guard reads the last user turn."""
        tok = self.engine.tokenizer
        if not getattr(tok, "chat_template", None):
            raise ApiError(400, "this model has no chat template; use /v1/completions", "messages")
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text(f"messages.{i}")}
                    for i, m in enumerate(req.messages)]
        try:
            text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as err:  # noqa: BLE001 - jinja templates raise their own errors for bad turns
            raise ApiError(400, f"the model's chat template rejected these messages: {err}", "messages") from None
        users = [m["content"] for m in messages if m["role"] == "user"] or [messages[-1]["content"]]
        return [users[-1]], [tok(text, add_special_tokens=False)["input_ids"]]

    def sampling(self, req: Any, prompts: list[list[int]], chat: bool) -> tuple[Sampling, int]:
        """Decoding settings after the n, prompt-length, max_tokens and context checks."""
        n, context, where = req.n or 1, self.engine.max_context, "messages" if chat else "prompt"
        if n > self.max_n:
            raise ApiError(400, f"'n' is {n}; this server allows at most {self.max_n}", "n")
        longest = max(len(p) for p in prompts)
        if longest > self.max_prompt:
            raise ApiError(400, f"the prompt is {longest} tokens; this server accepts at most {self.max_prompt}",
                           where, "context_length_exceeded")
        wanted = (req.max_completion_tokens or req.max_tokens) if chat else req.max_tokens
        if wanted is not None and wanted > self.settings.max_tokens:
            raise ApiError(400, f"'max_tokens' is {wanted}; this server allows at most {self.settings.max_tokens}",
                           "max_tokens")
        wanted = wanted if wanted is not None else min(self.settings.max_tokens, context - longest)
        if longest + wanted > context:
            raise ApiError(400, f"This model's maximum context length is {context} tokens. However, you requested "
                                f"{longest + wanted} tokens ({longest} in the prompt, {wanted} in the completion). "
                                "Please reduce the prompt or max_tokens.", "max_tokens", "context_length_exceeded")
        temperature = 1.0 if req.temperature is None else req.temperature
        top_p = 1.0 if req.top_p is None else req.top_p
        return Sampling(wanted, temperature, top_p, req.stops(), req.seed), n

    async def score(self, texts: list[str]) -> list[float]:
        """Guard scores of the prompts (empty without a guard)."""
        from starlette.concurrency import run_in_threadpool

        if self.guard is None:
            return []
        start = time.perf_counter()
        scores = await run_in_threadpool(self.guard.check, texts)
        self.metrics.guard_latency.observe(time.perf_counter() - start)
        self.metrics.guard_checks.inc(len(texts))
        self.metrics.guard_blocked.inc(sum(self.guard.blocked(s) for s in scores))
        return scores

    async def collect(self, job: Job, rid: str, chat: bool, prompts: list[list[int]]) -> dict[str, Any]:
        total = job.n * len(prompts)
        texts, reasons, tokens = [""] * total, [None] * total, [0] * total
        try:
            async for index, event in job.events(self.settings.request_timeout):
                texts[index] += event.text
                if event.finish_reason:
                    reasons[index], tokens[index] = event.finish_reason, event.n_tokens
        finally:
            job.cancel()
        self.metrics.completion_tokens.inc(sum(tokens))
        choices = [{"index": i, "text": texts[i], "finish_reason": reasons[i],
                    "refusal": texts[i] if reasons[i] == "content_filter" else None} for i in range(total)]
        return completion_body(rid, self.settings.model_name, choices, usage(sum(map(len, prompts)), sum(tokens)),
                               chat)

    async def stream(self, job: Job, rid: str, chat: bool, prompts: list[list[int]],
                     include_usage: bool) -> AsyncIterator[str]:
        """SSE chunks; ``[DONE]`` only after every choice finished (see the module docstring)."""
        name, start, first, generated = self.settings.model_name, time.perf_counter(), True, 0
        try:
            if chat:
                for i in range(job.n * len(prompts)):
                    yield sse(chunk_body(rid, name, i, "", None, chat, first=True))
            async for index, event in job.events(self.settings.request_timeout):
                if first and event.text:
                    self.metrics.first_token.labels("chat" if chat else "completions").observe(
                        time.perf_counter() - start)
                    first = False
                generated += event.n_tokens if event.finish_reason else 0
                yield sse(chunk_body(rid, name, index, event.text, event.finish_reason, chat))
            self.metrics.completion_tokens.inc(generated)
            if include_usage:
                yield sse(usage_chunk(rid, name, usage(sum(map(len, prompts)), generated), chat))
            yield "data: [DONE]\n\n"
        except ApiError as err:
            yield sse(err.body())
        finally:
            job.cancel()  # also when the client went away: stop generating for nobody


def sse(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


async def read_body(request: Any, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length", "")
    too_big = ApiError(413, f"request body exceeds this server's limit of {limit} bytes", None, "body_too_large")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)
