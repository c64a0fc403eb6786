"""Request-level dynamic batching: requests that arrive within a few milliseconds run as one batch.

Used for encoder–decoder transformers models (through ``model.generate``) and for the CPU deployment
runtime, CTranslate2 (``Generator.generate_batch`` for decoder-only, ``Translator.translate_batch`` for
encoder–decoder model folders). Waiting requests are grouped by the settings a batch must share
(temperature, top-p and, when sampling, the seed); each row still stops on its own EOS, stop strings and
``max_tokens`` through a per-token callback (a ``StoppingCriteria`` for transformers, ``callback`` for
CTranslate2), which also streams the text as it is produced. A new request waits for the running batch
to finish; decoder-only transformers models avoid that wait with ``continuous.py``.

A runner is any object with ``eos_ids``, ``max_context`` and ``run(prompts, sampling, on_token)`` (token-id
prompts, one ``Sampling`` for the batch with its largest ``max_tokens``) that calls ``on_token(row, token)
-> bool`` for each generated token; True means row ``row`` is done and may stop.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from slmkit.errors import ConfigError, ModelError
from slmkit.serve.engine import Event, Sampling, TextTracker, ThreadedEngine, Ticket, eos_ids_of

OnToken = Callable[[int, int], bool]


class RequestBatchEngine(ThreadedEngine):
    """Runs each gathered group of requests to completion through ``runner``."""

    kind = "request"

    def __init__(self, runner: Any, tokenizer: Any, max_batch: int = 32, batch_wait_ms: float = 5.0):
        super().__init__(tokenizer, runner.max_context, max_batch, batch_wait_ms)
        self.runner = runner
        self.active: list[tuple[Ticket, int, TextTracker]] = []

    def _loop_once(self) -> None:
        groups: dict[tuple, list[Ticket]] = {}
        for ticket in self.take(self.max_batch, block=True):
            s = ticket.sampling
            key = (s.temperature, s.top_p, s.seed) if s.temperature > 0 else (0.0, 1.0, None)
            groups.setdefault(key, []).append(ticket)
        for tickets in groups.values():
            self._run_group(tickets)

    def _run_group(self, tickets: list[Ticket]) -> None:
        eos = self.runner.eos_ids
        self.active = [(t, i, TextTracker(self.tokenizer, t.sampling, eos)) for t in tickets for i in range(t.n)]
        s = tickets[0].sampling
        sampling = Sampling(max(t.sampling.max_tokens for t in tickets), s.temperature, s.top_p, (), s.seed)
        self.runner.run([t.prompt for t, _, _ in self.active], sampling, self._on_token)
        if self._stop.is_set():
            return  # interrupted: the worker's exit aborts the unfinished rows
        for ticket, index, tracker in self.active:  # rows the runner ended without telling us (EOS, length)
            if tracker.finish_reason is None and not ticket.cancelled:
                delta = tracker.close("stop" if tracker.n_tokens < ticket.sampling.max_tokens else "length")
                ticket.sink(Event(index, delta, tracker.finish_reason, tracker.n_tokens))
        self.active = []

    def _on_token(self, row: int, token: int) -> bool:
        ticket, index, tracker = self.active[row]
        if tracker.finish_reason is not None or ticket.cancelled or self._stop.is_set():
            return True
        delta = tracker.push(token)
        if delta or tracker.finish_reason:
            ticket.sink(Event(index, delta, tracker.finish_reason, tracker.n_tokens))
        return tracker.finish_reason is not None

    def _abort_active(self) -> None:
        for ticket, index, tracker in self.active:
            if tracker.finish_reason is None:
                ticket.sink(Event(index, "", "abort", tracker.n_tokens))
        self.active = []


class HFRunner:
    """A transformers model through ``model.generate``, one callback per generated token."""

    def __init__(self, model: Any, tokenizer: Any):
        from slmkit.models.load import is_encoder_decoder

        self.model = model.eval()
        self.tokenizer = tokenizer
        self.encdec = is_encoder_decoder(model)
        self.eos_ids = eos_ids_of(tokenizer, getattr(model, "generation_config", None))
        config = model.config
        self.max_context = int(getattr(config, "max_position_embeddings", 0) or getattr(config, "n_positions", 0)
                               or getattr(tokenizer, "model_max_length", 2048))

    def run(self, prompts: list[list[int]], sampling: Sampling, on_token: OnToken) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        from slmkit.models.generate import pad_batch

        ids, mask = pad_batch(prompts, self.tokenizer.pad_token_id or 0, left=not self.encdec)
        done = [False] * len(prompts)

        class PerToken(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                for row, token in enumerate(input_ids[:, -1].tolist()):
                    done[row] = done[row] or on_token(row, token)
                return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

        kwargs: dict[str, Any] = dict(max_new_tokens=sampling.max_tokens, pad_token_id=self.tokenizer.pad_token_id,
                                      eos_token_id=sorted(self.eos_ids), stopping_criteria=StoppingCriteriaList(
                                          [PerToken()]), do_sample=sampling.temperature > 0)
        if sampling.temperature > 0:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)  # the engine thread is the only user of the global RNG
        with torch.inference_mode():
            self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)


class CT2Runner:
    """A CTranslate2 model folder (``Generator`` for decoder-only, ``Translator`` for encoder–decoder)."""

    def __init__(self, path: str, tokenizer: Any, device: str = "cpu", compute_type: str = "default",
                 threads: int = 0):
        import ctranslate2

        self.tokenizer = tokenizer
        config = json.loads((Path(path) / "config.json").read_text()) if (Path(path) / "config.json").exists() else {}
        kwargs = dict(device=device, compute_type=compute_type, intra_threads=threads)
        try:
            self.model: Any = ctranslate2.Generator(path, **kwargs)
            self.encdec = False
        except (RuntimeError, ValueError):
            try:
                self.model = ctranslate2.Translator(path, **kwargs)
                self.encdec = True
            except (RuntimeError, ValueError) as err:
                raise ModelError(f"'{path}' is not a CTranslate2 model folder: {err}") from err
        self.eos_ids = eos_ids_of(tokenizer)
        self.max_context = int(config.get("max_position_embeddings") or getattr(tokenizer, "model_max_length", 2048))
        self.max_context = min(self.max_context, 1 << 20)

    def run(self, prompts: list[list[int]], sampling: Sampling, on_token: OnToken) -> None:
        import ctranslate2

        tokens = [self.tokenizer.convert_ids_to_tokens(p) for p in prompts]
        options: dict[str, Any] = dict(max_batch_size=0, beam_size=1, end_token=sorted(self.eos_ids),
                                       return_end_token=True, sampling_topk=1, callback=lambda step: on_token(
                                           step.batch_id, step.token_id))
        if sampling.temperature > 0:
            options.update(sampling_topk=0, sampling_topp=sampling.top_p, sampling_temperature=sampling.temperature)
            if sampling.seed is not None:
                ctranslate2.set_random_seed(sampling.seed)
        if self.encdec:
            self.model.translate_batch(tokens, max_decoding_length=sampling.max_tokens, **options)
        else:
            self.model.generate_batch(tokens, max_length=sampling.max_tokens, include_prompt_in_result=False,
                                      **options)


def load_ct2_engine(path: str, tokenizer: str | None = None, max_batch: int = 32, batch_wait_ms: float = 5.0,
                    device: str = "cpu", compute_type: str = "default", threads: int = 0,
                    **_: Any) -> RequestBatchEngine:
    """A CTranslate2 folder (as written by slmkit's CPU deployment export or ``ct2-transformers-converter``);
    the tokenizer comes from ``tokenizer`` or from the same folder."""
    from slmkit.models.load import load_tokenizer

    if not (Path(path) / "model.bin").exists():
        raise ConfigError(f"'{path}' is not a CTranslate2 model folder: model.bin is missing")
    tok = load_tokenizer(tokenizer or path)
    return RequestBatchEngine(CT2Runner(path, tok, device, compute_type, threads), tok, max_batch, batch_wait_ms)
