"""Compressed variants of a model, and their footprint (disk, resident memory), for side-by-side eval.

Variants (``VARIANTS``), each applied to a copy of the loaded model:

- ``int8``: PyTorch dynamic quantization (``torch.ao.quantization.quantize_dynamic``): Linear weights int8
  per tensor, activations quantized on the fly (CPU kernels fbgemm/x86/qnnpack).
- ``int4``: weight-only int4, asymmetric, groups of 32 along the input (the tinygemm scheme of GPTQ/AWQ
  int4 kernels), run by PyTorch's own packed int4 CPU kernel ``aten._weight_int4pack_mm_for_cpu``:
  weights packed two per byte, bf16 scales and zero points, bf16 activations. Where the kernel is
  missing (a non-x86 build), the variant is refused with that reason.
- ``pruned``: magnitude pruning (``torch.nn.utils.prune.l1_unstructured``) of 50% of every Linear weight
  except the output head, made permanent; stored dense, so disk and memory do not shrink.

``disk_bytes`` writes the variant's tensors (quantized data and scales as they are held) to a temporary
safetensors file and measures it. ``measure_rss`` loads and compresses the model in a fresh Python
process and reports its resident-memory growth (after the imports) and peak — in-process numbers would
be blurred by whatever was loaded before.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from slmkit.errors import ModelError

VARIANTS = ("int8", "int4", "pruned")
PRUNE_AMOUNT = 0.5
INT4_GROUP = 32


def _linear_names(model: Any) -> list[str]:
    import torch

    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]


def compress(model: Any, variant: str, inplace: bool = False) -> Any:
    """A compressed copy of ``model`` (the original is left untouched unless ``inplace``)."""
    import copy

    import torch

    if variant not in VARIANTS:
        raise ModelError(f"unknown compression variant '{variant}' (known: {', '.join(VARIANTS)})")
    model = (model if inplace else copy.deepcopy(model)).eval()
    if variant in ("int8", "int4"):
        model = model.to("cpu")  # their kernels (fbgemm/x86 int8, aten int4) are CPU kernels
    if variant == "int8":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch 2.13 deprecates eager quantization in favour of torchao
            return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    if variant == "int4":
        return _int4(model)
    from torch.nn.utils import prune

    for name in _linear_names(model):
        if name.endswith("lm_head"):
            continue  # tied to the embeddings: pruning it would prune the input embeddings too
        module = model.get_submodule(name)
        prune.l1_unstructured(module, "weight", amount=PRUNE_AMOUNT)
        prune.remove(module, "weight")
    return model


def _has_int4_kernel() -> bool:
    import torch

    return hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu") and \
        hasattr(torch.ops.aten, "_convert_weight_to_int4pack_for_cpu")


def _int4(model: Any) -> Any:
    """Swap every Linear except the output head (kept in float, as GPTQ/AWQ do) for an Int4Linear."""
    if not _has_int4_kernel():
        raise ModelError("int4: this PyTorch build has no packed int4 CPU kernel (aten._weight_int4pack_mm_for_cpu)")
    swapped = 0
    for name in _linear_names(model):
        module = model.get_submodule(name)
        if name.endswith("lm_head") or module.in_features % INT4_GROUP or module.out_features % 8:
            continue  # the kernel needs groups of 32 inputs and outputs in multiples of 8
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, Int4Linear.from_linear(module))
        swapped += 1
    if not swapped:
        raise ModelError(f"int4: no Linear layer fits groups of {INT4_GROUP} inputs and multiples of 8 outputs")
    return model


def _int4_linear_class() -> type:
    import torch

    class _Int4Linear(torch.nn.Module):
        """y = x·Wᵀ + b with W held as packed uint4 (two per byte) plus per-group bf16 scale and zero."""

        def __init__(self, packed: Any, scales_zeros: Any, bias: Any, in_features: int, out_features: int):
            super().__init__()
            self.in_features, self.out_features = in_features, out_features
            self.register_buffer("packed", packed)
            self.register_buffer("scales_zeros", scales_zeros)
            self.bias = None if bias is None else torch.nn.Parameter(bias.detach().clone(), requires_grad=False)

        @classmethod
        def from_linear(cls, linear: Any) -> Any:
            w = linear.weight.detach().float()
            n, k = w.shape
            groups = w.reshape(n, k // INT4_GROUP, INT4_GROUP)
            low, high = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
            scale = (high - low).clamp(min=1e-8) / 15
            q = ((groups - low) / scale).round().clamp(0, 15).to(torch.int32).reshape(n, k)
            zero = low + 8 * scale  # the kernel computes (q - 8) * scale + zero
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 2)
            sz = torch.cat([scale, zero], -1).transpose(0, 1).contiguous().to(torch.bfloat16)
            return cls(packed, sz, linear.bias, k, n)

        def forward(self, x: Any) -> Any:
            flat = x.reshape(-1, self.in_features).to(torch.bfloat16)
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.packed, INT4_GROUP, self.scales_zeros)
            y = y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)
            return y if self.bias is None else y + self.bias

    return _Int4Linear


class _LazyInt4:
    """Defers building the torch.nn.Module subclass until first use (no torch import at module load)."""

    _cls: type | None = None

    def __getattr__(self, attr: str) -> Any:
        if _LazyInt4._cls is None:
            _LazyInt4._cls = _int4_linear_class()
        return getattr(_LazyInt4._cls, attr)


Int4Linear: Any = _LazyInt4()


def _plain_tensors(value: Any, prefix: str, out: dict[str, Any]) -> None:
    """Flatten quantized tensors, packed params and tensor subclasses into plain tensors."""
    import torch

    if isinstance(value, tuple | list):
        for i, v in enumerate(value):
            _plain_tensors(v, f"{prefix}.{i}", out)
    elif isinstance(value, torch.Tensor) and value.is_quantized:
        out[prefix] = value.int_repr()
        scales = value.q_per_channel_scales() if value.qscheme() in (
            torch.per_channel_affine, torch.per_channel_symmetric) else torch.tensor([value.q_scale()])
        out[prefix + ".scale"] = scales.float()
    elif _subclass(value) is not None:
        inner = _subclass(value)
        for name in inner.__tensor_flatten__()[0]:
            out[f"{prefix}.{name}"] = getattr(inner, name)
    elif isinstance(value, torch.Tensor):
        out[prefix] = value.detach()
    elif hasattr(value, "__getstate__") and "PackedParams" in type(value).__name__:
        _plain_tensors(value.__getstate__(), prefix, out)


def _subclass(value: Any) -> Any:
    """The tensor subclass (e.g. a torchao quantized weight) behind a value, or None for plain tensors."""
    import torch

    inner = value.data if isinstance(value, torch.nn.Parameter) else value
    if isinstance(inner, torch.Tensor) and type(inner) not in (torch.Tensor, torch.nn.Parameter) \
            and hasattr(inner, "__tensor_flatten__"):
        return inner
    return None


def disk_bytes(model: Any) -> int:
    """Bytes of the model's weights as held (quantized data + scales), written as one safetensors file."""
    from safetensors.torch import save_file

    flat: dict[str, Any] = {}
    seen: set[int] = set()
    alive = []  # derived tensors (int_repr, scales) stay referenced so no data_ptr is reused while deduping
    for name, value in model.state_dict(keep_vars=True).items():
        parts: dict[str, Any] = {}
        _plain_tensors(value, name, parts)
        alive.append(parts)
        for key, tensor in parts.items():
            if tensor.numel() and tensor.data_ptr() in seen:
                continue  # tied weights are stored once
            seen.add(tensor.data_ptr())
            flat[key] = tensor.contiguous().clone()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        save_file(flat, str(path))
        return path.stat().st_size


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        import os

        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _release_freed() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc), so RSS shows what is held."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _measure_main(model_path: str, variant: str) -> None:
    """Child process: RSS growth from loading (and compressing) the model, and the peak RSS."""
    import resource

    import torch  # noqa: F401  (imports count as baseline, not as model memory)
    import transformers  # noqa: F401

    from slmkit.models.build import model_from_config
    from slmkit.models.load import load_model

    # Build the architecture once on the meta device so that its modules are imported before the baseline.
    with torch.device("meta"):
        model_from_config(transformers.AutoConfig.from_pretrained(model_path))
    before = _rss_bytes()
    model = load_model(model_path)
    if variant != "original":
        model = compress(model, variant, inplace=True)
        _release_freed()
    after = _rss_bytes()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"rss_mb": (after - before) / 2 ** 20, "peak_rss_mb": peak / 2 ** 20}))


def measure_rss(model_path: str, variant: str, timeout: int = 300) -> dict[str, float]:
    """RSS figures of ``variant`` ("original" or one of VARIANTS), measured in a fresh process."""
    code = f"from slmkit.eval.compress import _measure_main; _measure_main({model_path!r}, {variant!r})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                         env=_child_env())
    if out.returncode != 0:
        raise ModelError(f"measuring memory of {model_path} ({variant}) failed: {out.stderr.strip()[-400:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _child_env() -> dict[str, str]:
    import os

    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
