"""The ``guard_export`` stage: an encoder guard to ONNX (fp32 and int8) and the ``onnx`` guard that runs it.

Export: ``torch.onnx.export`` (dynamic batch and sequence axes), then ONNX Runtime's transformer optimizer
fuses attention, LayerNorm and GELU (python fusions only, so the file stays portable). Int8: ONNX Runtime
dynamic quantization of the MatMul/Attention weights with the choices that keep decisions faithful:

- per-channel weight scales (one outlier column no longer coarsens a whole matrix);
- ``reduce_range`` (7-bit weights): on x86 CPUs without VNNI the u8 x s8 kernels add pairs of products
  in int16 (VPMADDUBSW) and saturate with full 8-bit weights; 7 bits cannot overflow;
- sensitive nodes kept in fp32 (``keep_fp32``: the pooler and classifier by default, tiny but right at
  the decision; the embeddings are never quantized). Early encoder layers come next: their error reaches
  every later layer (the ``litelmguard`` recipe keeps layers 0-2 in fp32; its comment has the measurements).

Faithfulness is measured, not assumed: fp32 and int8 decisions are compared on every evaluation row
(val, test, held-out, XSTest) at the guard's threshold, and torch vs ONNX fp32 scores are checked.
Writes ``guard/`` (``guard.json``, ``model_fp32.onnx``, ``model_int8.onnx``, ``tokenizer.json``).
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from slmkit.artifacts import Result
from slmkit.config import field
from slmkit.errors import ConfigError, ModelError
from slmkit.guard.encoder import TokenWindows, WindowedGuard

OUTPUTS = {"guard": "guard"}
FILES = {"fp32": "model_fp32.onnx", "int8": "model_int8.onnx"}
QUANTIZED_OPS = ("MatMul", "Attention", "Gemm")  # the weight-bearing ops dynamic int8 rewrites


@dataclass(frozen=True, kw_only=True)
class Config:
    guard: str | None = field(None, doc="encoder guard folder written by guard_train", input=True)
    guard_data: str | None = field(None, doc="guard_data folder: rows for the fp32/int8 agreement check", input=True)
    ship: Literal["int8", "fp32"] = field("int8", doc="which precision the exported guard runs by default")
    optimize: bool = field(True, doc="fuse attention/LayerNorm/GELU with ONNX Runtime's transformer optimizer")
    per_channel: bool = field(True, doc="int8: one weight scale per output channel")
    reduce_range: bool = field(True, doc="int8: 7-bit weights (no int16 saturation on CPUs without VNNI)")
    keep_fp32: list[str] = field(factory=lambda: ["pooler", "classifier"],
                                 doc="int8: nodes whose name contains one of these stay in fp32 (each must match)")
    opset: int = field(17, doc="ONNX opset of the export")


class OnnxGuard(WindowedGuard):
    """An exported encoder guard run by ONNX Runtime on CPU."""

    kind = "onnx"

    def __init__(self, session: Any, windows: TokenWindows, threshold: float, precision: str):
        super().__init__(windows, threshold)
        self.session, self.precision = session, precision

    def window_probs(self, ids: Any, mask: Any) -> list[float]:
        import numpy as np

        logits = self.session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0].astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        return (probs[:, 1] / probs.sum(axis=1)).tolist()

    def save(self, folder: Path) -> dict[str, Any]:
        raise ModelError("an onnx guard is written by the guard_export stage, not saved again")

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any], threads: int | None = None,
             precision: str | None = None) -> OnnxGuard:
        precision = precision or meta.get("shipped", "int8")
        files = meta.get("files", {})
        if precision not in files or not (folder / files[precision]).is_file():
            raise ModelError(f"{folder}: no {precision} ONNX model (have: {', '.join(files) or 'none'})")
        return cls(session(folder / files[precision], threads), TokenWindows.load(folder, meta),
                   meta["threshold"], precision)


def session(path: Path, threads: int | None = None) -> Any:
    """A CPU ONNX Runtime session; ``threads`` fixes the intra-op thread count (default: all cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.inter_op_num_threads = 1
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def export_fp32(model: Any, path: Path, opset: int, optimize: bool) -> Path:
    """``torch.onnx.export`` of a sequence classifier (inputs: input_ids, attention_mask; output: logits)."""
    import torch

    model = model.eval()
    ids = torch.ones((2, 16), dtype=torch.long)
    mask = torch.ones((2, 16), dtype=torch.long)
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "logits": {0: "batch"}}
    raw = path.with_suffix(".raw.onnx")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on shape-dependent Python branches; checked below
        torch.onnx.export(model, (ids, mask), str(raw), input_names=["input_ids", "attention_mask"],
                          output_names=["logits"], dynamic_axes=axes, opset_version=opset, dynamo=False)
    if not optimize:
        raw.replace(path)
        return path
    from onnxruntime.transformers.optimizer import optimize_model

    cfg = model.config
    fused = optimize_model(str(raw), model_type="bert", num_heads=cfg.num_attention_heads,
                           hidden_size=cfg.hidden_size, opt_level=0)
    fused.save_model_to_file(str(path))
    raw.unlink()
    return path


def quantize_int8(fp32: Path, path: Path, cfg: Config) -> tuple[Path, list[str]]:
    """Dynamic int8 quantization of MatMul/Attention weights; returns the path and the nodes kept fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = onnx.load(str(fp32), load_external_data=False).graph.node
    keep = [n.name for n in nodes if any(key in n.name for key in cfg.keep_fp32)]
    # a key that matches nothing (a typo, or another encoder's node naming) would quietly ship a less
    # faithful int8 model
    unmatched = [key for key in cfg.keep_fp32 if not any(key in name for name in keep)]
    if unmatched:
        examples = [n.name for n in nodes if n.op_type in QUANTIZED_OPS][:3]
        raise ConfigError(f"guard_export.keep_fp32: {unmatched} match no node of the exported graph "
                          f"(its weight nodes are named like {examples}); fix or drop them")
    quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, per_channel=cfg.per_channel,
                     reduce_range=cfg.reduce_range, nodes_to_exclude=keep,
                     op_types_to_quantize=list(QUANTIZED_OPS),
                     # fused contrib ops (BiasGelu, SkipLayerNorm) have no ONNX shape inference: their
                     # outputs are fp32 tensors
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return path, keep


def agreement(a: list[float], b: list[float], threshold: float) -> dict[str, float]:
    """Share of identical decisions at one threshold, flips, and the largest score change."""
    same = sum((x >= threshold) == (y >= threshold) for x, y in zip(a, b))
    return {"agreement": same / max(1, len(a)), "flips": len(a) - same, "n": len(a),
            "max_abs_diff": max((abs(x - y) for x, y in zip(a, b)), default=0.0)}


def check_rows(guard_data: str) -> list[str]:
    """Texts of every evaluation split (val, test, heldout, xstest) for the agreement check."""
    from slmkit.guard.data import read_split

    return [r["prompt"] for split in ("val", "test", "heldout", "xstest")
            for r in read_split(guard_data, split)]


def run(cfg: Config, run_dir: Path) -> Result:
    """Export fp32 and int8, measure agreement, write the ONNX guard folder."""
    from slmkit.artifacts import atomic_dir, atomic_write_json
    from slmkit.guard import META_FILE, load_guard, read_meta

    if not cfg.guard or not cfg.guard_data:
        raise ConfigError("guard_export: guard and guard_data must be set (wire them with from: guard_train, "
                          "guard_data); the int8/fp32 agreement is always measured")
    meta = read_meta(cfg.guard)
    if meta["kind"] != "encoder":
        raise ConfigError(f"guard_export: {cfg.guard} is a '{meta['kind']}' guard; only encoder guards export")
    torch_guard = load_guard(cfg.guard)
    texts = check_rows(cfg.guard_data)
    with atomic_dir(run_dir / OUTPUTS["guard"]) as tmp:
        export_fp32(torch_guard.model, tmp / FILES["fp32"], cfg.opset, cfg.optimize)
        _, kept = quantize_int8(tmp / FILES["fp32"], tmp / FILES["int8"], cfg)
        shutil.copy(Path(cfg.guard) / "tokenizer.json", tmp / "tokenizer.json")
        out = {**{k: v for k, v in meta.items() if k not in ("kind",)}, "kind": "onnx", "shipped": cfg.ship,
               "files": FILES, "kept_fp32": kept, "source_guard": str(cfg.guard),
               "quantization": {"per_channel": cfg.per_channel, "reduce_range": cfg.reduce_range}}
        atomic_write_json(tmp / META_FILE, out)
        guards = {p: OnnxGuard.load(tmp, out, precision=p) for p in FILES}
        scores = {p: g.score(texts) for p, g in guards.items()}
        reference = torch_guard.score(texts[:256])
        metrics = {"int8_vs_fp32": agreement(scores["fp32"], scores["int8"], meta["threshold"]),
                   "onnx_vs_torch_fp32": agreement(reference, scores["fp32"][:256], meta["threshold"]),
                   "size_mb": {p: (tmp / f).stat().st_size / 1e6 for p, f in FILES.items()}}
        atomic_write_json(tmp / "agreement.json", metrics)
    return Result(metrics={"agreement_int8_fp32": metrics["int8_vs_fp32"]["agreement"],
                           "flips_int8_fp32": metrics["int8_vs_fp32"]["flips"],
                           "max_abs_diff_onnx_torch": metrics["onnx_vs_torch_fp32"]["max_abs_diff"],
                           "size_mb_fp32": metrics["size_mb"]["fp32"], "size_mb_int8": metrics["size_mb"]["int8"],
                           "rows_checked": len(texts)})
