"""Offline teacher: the teacher's top-k log-probabilities at every target token, computed once, read back.

Online KD runs the teacher forward in every step of every epoch. Offline mode runs it once over the
training set (MiniLLM/DistillKit-style "logit caching"), keeps for each target token the k most likely
tokens, their log-probs at the distillation temperature and, explicitly, the log of all the *remaining*
mass (``tail``, computed exactly from the full distribution), and trains later epochs from disk. The loss
then compares the teacher and the student over k+1 bins (the top-k tokens + "the rest"), see
``losses.topk_bins``; with k ≥ the vocabulary it is the full-vocabulary loss.

Layout under ``<stage>/teacher_topk/``: ``shard-NNNNN.safetensors`` holding ``values`` [rows, k] (float32
or float16), ``indices`` [rows, k] (int32), ``tail`` [rows] (float32) and ``valid`` [rows] (uint8: 0 where
the teacher had no prediction, e.g. cut by truncation), one row per student target token, examples in
order; and ``index.json`` (key, k, shards with their first example and row offsets), written last so a
cache is either complete or ignored. The key hashes the teacher, the encoded examples and every setting
that changes the numbers, so a stale cache is never read.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from slmkit.artifacts import atomic_write_bytes, atomic_write_json, hash_input, read_json

SHARD_EXAMPLES = 4096


def cache_key(teacher: str, examples: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    """Identity of a cache: teacher content, the exact token ids of both sides, and the settings."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    digest.update(hash_input(teacher).encode())
    for e in examples:
        digest.update(json.dumps([e["prompt_ids"], e["completion_ids"], e["teacher_prompt_ids"],
                                  e["teacher_completion_ids"], e["target_map"]]).encode())
    return digest.hexdigest()[:24]


def topk_rows(logits: Any, k: int, temperature: float, vocab: int) -> tuple[Any, Any, Any]:
    """(values, indices, tail) of one target-major logits tensor [..., V] clipped to ``vocab``."""
    import torch

    logp = torch.log_softmax(logits[..., :vocab].float() / temperature, dim=-1)
    k = min(k, vocab)
    values, indices = logp.topk(k, dim=-1)
    tail = logp.scatter(-1, indices, float("-inf")).logsumexp(-1)
    return values, indices, tail


def build_cache(folder: Path, key: str, teacher: Any, examples: list[dict[str, Any]], collate: Any,
                *, k: int, temperature: float, vocab: int, batch_size: int, dtype: str,
                show_progress: bool = True) -> dict[str, Any]:
    """Run the teacher over ``examples`` once and write the shards and ``index.json``; returns the index."""
    import torch
    from safetensors.torch import save

    from slmkit.progress import progress
    from slmkit.train.kd_data import teacher_logits, teacher_side

    folder.mkdir(parents=True, exist_ok=True)
    device = next(teacher.parameters()).device
    shards, parts, first, rows = [], [], 0, 0
    offsets = [0]
    with progress(transient=True) as bar:
        task = bar.add_task("teacher top-k", total=len(examples), info="", visible=show_progress)
        for start in range(0, len(examples), batch_size):
            chunk = examples[start:start + batch_size]
            batch = {k_: v.to(device) for k_, v in collate(chunk).items()}
            logits, valid = teacher_side(teacher_logits(teacher, batch), batch["teacher_target_pos"])
            values, indices, tail = topk_rows(logits, k, temperature, vocab)
            for b, example in enumerate(chunk):
                n = int(collate.target_count(example))
                parts.append((values[b, :n], indices[b, :n], tail[b, :n], valid[b, :n]))
                offsets.append(offsets[-1] + n)
            bar.advance(task, len(chunk))
            if len(offsets) - 1 - first >= SHARD_EXAMPLES or start + batch_size >= len(examples):
                name = f"shard-{len(shards):05d}.safetensors"
                tensors = {"values": torch.cat([p[0] for p in parts]).to(getattr(torch, dtype)).contiguous().cpu(),
                           "indices": torch.cat([p[1] for p in parts]).to(torch.int32).contiguous().cpu(),
                           "tail": torch.cat([p[2] for p in parts]).float().contiguous().cpu(),
                           "valid": torch.cat([p[3] for p in parts]).to(torch.uint8).contiguous().cpu()}
                atomic_write_bytes(folder / name, save(tensors))
                shards.append({"file": name, "first_example": first, "row_offsets": offsets[first:]})
                first, parts = len(offsets) - 1, []
                rows = offsets[-1]
    index = {"key": key, "k": min(k, vocab), "temperature": temperature, "vocab": vocab, "dtype": dtype,
             "examples": len(examples), "rows": rows, "shards": shards}
    atomic_write_json(folder / "index.json", index)
    return index


def load_index(folder: Path, key: str) -> dict[str, Any] | None:
    """The index of a complete cache with this key, or None (absent, partial or stale)."""
    path = folder / "index.json"
    if not path.exists():
        return None
    index = read_json(path)
    if index.get("key") != key or not all((folder / s["file"]).exists() for s in index["shards"]):
        return None
    return index


class TopKReader:
    """Random access to the cached rows of any example (memory-mapped safetensors slices)."""

    def __init__(self, folder: Path, index: dict[str, Any]):
        from safetensors import safe_open

        self.index = index
        self.k = int(index["k"])
        self.handles = [safe_open(str(folder / s["file"]), framework="pt") for s in index["shards"]]
        self.where: list[tuple[int, int, int]] = []  # example -> (shard, row start, row end)
        for shard_no, shard in enumerate(index["shards"]):
            offs = shard["row_offsets"]
            base = offs[0]
            self.where += [(shard_no, a - base, b - base) for a, b in zip(offs, offs[1:])]

    def batch(self, indices: list[int], width: int) -> dict[str, Any]:
        """Target-major teacher tensors [B, width, k] for examples ``indices`` (padding rows invalid)."""
        import torch

        out = {"kd_values": torch.zeros(len(indices), width, self.k),
               "kd_indices": torch.zeros(len(indices), width, self.k, dtype=torch.long),
               "kd_tail": torch.zeros(len(indices), width),
               "kd_valid": torch.zeros(len(indices), width, dtype=torch.bool)}
        for b, i in enumerate(indices):
            shard, a, z = self.where[i]
            n = min(z - a, width)
            handle = self.handles[shard]
            out["kd_values"][b, :n] = handle.get_slice("values")[a:a + n].float()
            out["kd_indices"][b, :n] = handle.get_slice("indices")[a:a + n].long()
            out["kd_tail"][b, :n] = handle.get_slice("tail")[a:a + n]
            out["kd_valid"][b, :n] = handle.get_slice("valid")[a:a + n].bool()
        return out
