"""Greedy decoding that reuses the KV cache of a shared prompt prefix and drops finished rows.

Evaluation prompts share long prefixes: in k-shot prompting every item of a repeat starts with the same
exemplars, often 80–90% of the prompt. ``PrefixCachedDecoder`` runs the longest common token prefix
through the model once, copies its key/value cache into each batch, and prefills only each prompt's own
suffix (automatic prefix caching, as in vLLM/SGLang). During decoding, rows that reached EOS or a stop
string leave the batch (their cache rows are dropped), so the batch shrinks instead of carrying finished
sequences to the longest one's end. Arithmetic is the model's own forward; only the bookkeeping differs
from ``model.generate``, so greedy outputs agree with it up to floating-point ties.

It plugs into :func:`slmkit.models.generate.generate` as a runtime (``generate_texts``). Sampling, n > 1,
encoder–decoder models and models whose generation config adds logits processors take the ordinary path.
"""

from __future__ import annotations

import copy
from typing import Any

MIN_PREFIX = 16  # shorter shared prefixes are not worth a separate forward pass


def common_prefix(encoded: list[list[int]]) -> int:
    """Length of the longest common token prefix, leaving every prompt at least one token of its own."""
    if not encoded:
        return 0
    limit = min(len(e) for e in encoded) - 1
    first = encoded[0]
    n = 0
    while n < limit and all(e[n] == first[n] for e in encoded):
        n += 1
    return n


def _plain_greedy(model: Any) -> bool:
    """Whether the model's own generation config would change greedy decoding (then use generate())."""
    gc = getattr(model, "generation_config", None)
    return gc is None or ((gc.repetition_penalty in (None, 1.0)) and not gc.no_repeat_ngram_size
                          and not gc.bad_words_ids and not gc.suppress_tokens and not gc.begin_suppress_tokens)


class PrefixCachedDecoder:
    """A runtime for ``generate()``: greedy decoding with a shared-prefix cache and row compaction."""

    def __init__(self, model: Any, min_prefix: int = MIN_PREFIX):
        self.model = model
        self.min_prefix = min_prefix

    def parameters(self) -> Any:
        return self.model.parameters()

    def generate_texts(self, tokenizer: Any, prompts: list[str], cfg: Any) -> list[Any]:
        import torch

        from slmkit.data.format import encode_prompt
        from slmkit.models.generate import Generation, generate
        from slmkit.models.load import is_encoder_decoder

        if cfg.temperature > 0 or cfg.n != 1 or is_encoder_decoder(self.model) or not _plain_greedy(self.model):
            return generate(self.model, tokenizer, prompts, cfg, show_progress=False)
        encoded = [encode_prompt(tokenizer, p, cfg.prompt_format) for p in prompts]
        shared = common_prefix(encoded)
        shared = shared if shared >= self.min_prefix else 0
        self.model.eval()
        results: list[Any] = [None] * len(prompts)
        with torch.inference_mode():
            prefix = self._prefix_cache(encoded[0][:shared]) if shared else None
            order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
            for start in range(0, len(order), cfg.batch_size):
                idx = order[start:start + cfg.batch_size]
                texts, counts = self._decode([encoded[i][shared:] for i in idx], prefix, shared, tokenizer, cfg)
                for i, text, count in zip(idx, texts, counts):
                    results[i] = Generation(prompts[i], [text], [count])
        return results

    def _device(self) -> Any:
        return next(self.model.parameters()).device

    def _forward(self, cache: Any, **inputs: Any) -> tuple[Any, Any]:
        """(last-position logits, cache); transformers 5 renamed ``past_key_values`` to ``cache``."""
        import inspect

        key = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        out = self.model(**inputs, use_cache=True, **{key: cache})
        return out.logits[:, -1], out[key] if key in out else out.past_key_values

    def _prefix_cache(self, ids: list[int]) -> Any:
        import torch

        return self._forward(None, input_ids=torch.tensor([ids], device=self._device()))[1]

    def _prefill(self, suffixes: list[list[int]], prefix: Any, shared: int, pad_id: int) -> tuple[Any, ...]:
        """Forward the left-padded suffixes after a copy of the prefix cache; returns (logits, cache, mask, pos)."""
        import torch

        from slmkit.models.generate import pad_batch

        device = self._device()
        ids, mask = pad_batch(suffixes, pad_id, left=True)
        ids, mask = ids.to(device), mask.to(device)
        attention = torch.cat([torch.ones(len(suffixes), shared, dtype=mask.dtype, device=device), mask], 1)
        positions = shared + (mask.cumsum(1) - 1).clamp(min=0)
        cache = None
        if prefix is not None:
            cache = copy.deepcopy(prefix)
            cache.batch_repeat_interleave(len(suffixes))
        logits, cache = self._forward(cache, input_ids=ids, attention_mask=attention, position_ids=positions)
        return logits, cache, attention, positions[:, -1] + 1

    def _decode(self, suffixes: list[list[int]], prefix: Any, shared: int, tokenizer: Any,
                cfg: Any) -> tuple[list[str], list[int]]:
        import torch

        from slmkit.models.generate import cut_at_stop

        logits, cache, attention, position = self._prefill(suffixes, prefix, shared, tokenizer.pad_token_id)
        eos = tokenizer.eos_token_id
        window = max((len(s) for s in cfg.stop), default=0) + 2
        active = list(range(len(suffixes)))
        out: list[list[int]] = [[] for _ in suffixes]
        for step in range(cfg.max_new_tokens):
            token = logits.argmax(-1)
            keep = []
            for j, row in enumerate(active):
                out[row].append(int(token[j]))
                stopped = cfg.stop and any(s in tokenizer.decode(out[row][-window:], skip_special_tokens=True)
                                           for s in cfg.stop)
                keep.append(not (out[row][-1] == eos or stopped))
            if step == cfg.max_new_tokens - 1 or not any(keep):
                break
            if not all(keep):
                rows = torch.tensor([j for j, k in enumerate(keep) if k], device=token.device)
                cache.batch_select_indices(rows)
                token, attention, position = token[rows], attention[rows], position[rows]
                active = [a for a, k in zip(active, keep) if k]
            attention = torch.cat([attention, attention.new_ones(len(active), 1)], 1)
            logits, cache = self._forward(cache, input_ids=token[:, None], attention_mask=attention,
                                          position_ids=position[:, None])
            position = position + 1
        texts = [cut_at_stop(tokenizer.decode(o, skip_special_tokens=True), list(cfg.stop)) for o in out]
        return texts, [len(o) for o in out]
