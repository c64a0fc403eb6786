"""The memory-bandwidth limit of decoding: measured read bandwidth and the weight bytes each new token reads.

At batch 1 every decode step reads every weight on the decode path once, and on a CPU that read, not the
arithmetic, bounds the speed: ``limit tokens/s = read bandwidth / weight bytes per token``. The decode path
is the whole model for decoder-only (the tied table is read by the LM head), and for encoder–decoder the
decoder stack without the cross-attention K/V projections (applied once per input) plus the shared table.
KV-cache reads are left out (a few % at 512 tokens), so the limit is slightly optimistic.

``read_bandwidth`` sums a buffer much larger than the caches with all threads (torch) and with one thread
(numpy) and keeps the best rate: a machine's sustained read bandwidth as a decoding runtime can see it.
"""

from __future__ import annotations

import time
from typing import Any


def read_bandwidth(megabytes: int = 1024, repeats: int = 5) -> float:
    """Best sustained read rate in bytes/s over ``repeats`` sums of a ``megabytes`` buffer."""
    import numpy as np
    import torch

    n = megabytes * 2**20 // 4
    buffer = torch.ones(n, dtype=torch.float32)
    array = buffer.numpy()
    best = 0.0
    for reduce in (lambda: float(buffer.sum()), lambda: float(np.add.reduce(array))):
        reduce()  # touch every page before timing
        for _ in range(repeats):
            start = time.perf_counter()
            reduce()
            best = max(best, buffer.numel() * 4 / (time.perf_counter() - start))
    return best


def decode_params(model: Any) -> int:
    """Parameters read by one decode step (see module docstring); ``model`` may live on the meta device."""
    from slmkit.models.load import is_encoder_decoder

    encdec = is_encoder_decoder(model)
    names: dict[int, list[str]] = {}
    tensors: dict[int, Any] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
        tensors[id(p)] = p
    total = 0
    for key, p in tensors.items():
        if not encdec or any(_on_decode_path(n) for n in names[key]):
            total += p.numel()
    return total


def _on_decode_path(name: str) -> bool:
    if "cross_attn.k_proj" in name or "cross_attn.v_proj" in name:
        return False
    return ".decoder." in name or name.startswith(("lm_head", "decoder.")) or "shared" in name


def limit_tokens_per_s(bandwidth: float, params_per_token: int, bytes_per_param: float) -> float:
    """Batch-1 decode tokens/s if every step only had to stream its weights at ``bandwidth``."""
    return bandwidth / (params_per_token * bytes_per_param)
