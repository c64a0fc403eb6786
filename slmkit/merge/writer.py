"""Streaming safetensors writer: shards planned from the tensor shapes, each tensor written as it is merged.

The safetensors library writes a file from a complete dict of tensors, which would hold a whole shard in
memory; a merge knows every output name, shape and dtype before it starts, so each shard's header (the
8-byte little-endian header length, the JSON header padded with spaces to 8 bytes, then the tensors'
bytes in header order — the format of https://github.com/huggingface/safetensors) is written first and
each tensor is appended the moment it is computed. Memory stays at the tensor being written. Files use
the ``save_pretrained`` names (``model.safetensors`` or ``model-0000k-of-0000n.safetensors`` plus
``model.safetensors.index.json``), so transformers and ``safe_open`` read them unchanged.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.errors import ModelError

# safetensors dtype codes; names are torch's (torch.float32 -> "float32").
CODES: dict[str, str] = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64", "int32": "I32",
    "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL", "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
}
NAMES: dict[str, str] = {code: name for name, code in CODES.items()}
ITEMSIZE: dict[str, int] = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                            "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
FLOATING = ("F64", "F32", "F16", "BF16")
INDEX = "model.safetensors.index.json"


@dataclass(frozen=True)
class TensorSpec:
    """An output tensor as planned: name, shape and safetensors dtype code."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def numel(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count

    @property
    def nbytes(self) -> int:
        return self.numel * ITEMSIZE[self.dtype]


def shard_layout(specs: list[TensorSpec], shard_size: int) -> dict[str, list[TensorSpec]]:
    """File name -> tensors, in order, each shard at most ``shard_size`` bytes (or one larger tensor)."""
    shards: list[list[TensorSpec]] = [[]]
    size = 0
    for spec in specs:
        if shards[-1] and size + spec.nbytes > shard_size:
            shards.append([])
            size = 0
        shards[-1].append(spec)
        size += spec.nbytes
    if len(shards) == 1:
        return {"model.safetensors": shards[0]}
    n = len(shards)
    return {f"model-{i + 1:05d}-of-{n:05d}.safetensors": shard for i, shard in enumerate(shards)}


def header_bytes(specs: list[TensorSpec]) -> bytes:
    """The length prefix and JSON header of a file holding ``specs`` in this order."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for spec in specs:
        header[spec.name] = {"dtype": spec.dtype, "shape": list(spec.shape),
                             "data_offsets": [offset, offset + spec.nbytes]}
        offset += spec.nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data must start 8-byte aligned
    return len(text).to_bytes(8, "little") + text


class ShardWriter:
    """Write the planned shards into ``folder``; tensors must arrive in planned order."""

    def __init__(self, folder: Path, layout: dict[str, list[TensorSpec]]):
        self.folder, self.layout = Path(folder), layout
        self.queue = [(file, spec) for file, specs in layout.items() for spec in specs]
        self.position = 0
        self.handle: Any = None
        self.file: str | None = None

    def write(self, name: str, tensor: Any) -> None:
        """Append one tensor (checked against the plan) to its shard."""
        import torch

        if self.position >= len(self.queue):
            raise ModelError(f"merge wrote an unplanned tensor '{name}'")
        file, spec = self.queue[self.position]
        got = (tuple(tensor.shape), CODES.get(str(tensor.dtype).removeprefix("torch."), "?"))
        if name != spec.name or got != (spec.shape, spec.dtype):
            raise ModelError(f"merge produced {name} {got}, but the plan expected {spec.name} "
                             f"{(spec.shape, spec.dtype)}")
        if file != self.file:
            self._open(file)
        data = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()
        self.handle.write(data.data)
        self.position += 1

    def _open(self, file: str) -> None:
        self._close_handle()
        self.file = file
        self.handle = open(self.folder / file, "wb")
        self.handle.write(header_bytes(self.layout[file]))

    def _close_handle(self) -> None:
        if self.handle is not None:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            self.handle = None

    def abort(self) -> None:
        """Close an open shard without checks (the caller is discarding the folder)."""
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def close(self) -> None:
        """Finish the last shard and, for several shards, write the index transformers reads."""
        self._close_handle()
        if self.position != len(self.queue):
            raise ModelError(f"merge stopped after {self.position} of {len(self.queue)} tensors")
        if len(self.layout) > 1:
            total = sum(spec.nbytes for specs in self.layout.values() for spec in specs)
            index = {"metadata": {"total_size": total},
                     "weight_map": {spec.name: file for file, specs in self.layout.items() for spec in specs}}
            (self.folder / INDEX).write_text(json.dumps(index, indent=2) + "\n")


def parse_size(text: str | int) -> int:
    """Bytes from ``2GB``, ``500MB``, ``1.5G``, ``4096`` (decimal units, as ``save_pretrained`` uses)."""
    import re

    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*", str(text).upper())
    if not m:
        raise ValueError(f"'{text}' is not a size (examples: 2GB, 500MB, 4096)")
    return int(float(m.group(1)) * 1000 ** "_KMGT".index(m.group(2) or "_"))
