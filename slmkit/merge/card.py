"""The records a merged model carries: the resolved merge config and a model card (``README.md``).

The resolved config is the merge as it ran — absolute model paths, every method default filled in, the
dtype, the seed and the slmkit version — so the merge can be repeated from the output folder alone. The
card follows the Hugging Face layout (YAML front matter, then prose) that mergekit's cards use too.
"""

from __future__ import annotations

from typing import Any

import yaml

from slmkit.merge.method import REQUIRED
from slmkit.merge.plan import MergePlan


def resolved_config(plans: list[MergePlan], seed: int) -> dict[str, Any]:
    """The merge (all documents of a chain) with paths and defaults resolved."""
    from slmkit import __version__

    return {"slmkit_version": __version__, "seed": seed, "merges": [_resolved(plan) for plan in plans]}


def _resolved(plan: MergePlan) -> dict[str, Any]:
    cfg = plan.doc.config
    defaults = {k: p.default for k, p in plan.method.parameters().items() if p.default is not REQUIRED}
    models = [{"model": str(m.folder), "as_written": m.ref,
               "parameters": next((e.parameters for e in cfg.models if e.model == m.ref), {})} for m in plan.inputs]
    return {
        "name": cfg.name, "merge_method": cfg.merge_method, "reference": plan.method.reference,
        "base_model": str(plan.base.folder) if plan.base else None, "models": models,
        "parameters": cfg.parameters, "method_defaults": defaults, "dtype": cfg.dtype, "out_dtype": cfg.out_dtype,
        "tokenizer_source": str(plan.tokenizer_from.folder), "tensors": len(plan.steps),
        "output": str(plan.output),
    }


def model_card(plans: list[MergePlan], seed: int) -> str:
    """README.md for the final output of a chain of merges."""
    final = plans[-1]
    config = resolved_config(plans, seed)
    bases = sorted({m["base_model"] for m in config["merges"] if m["base_model"]})
    meta = {"library_name": "transformers", "tags": ["merge", "slmkit"], **({"base_model": bases} if bases else {})}
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", f"# {final.output.name}", "",
             f"This model was merged with slmkit in {len(plans)} step(s).", ""]
    for i, merged in enumerate(config["merges"], start=1):
        base = f" into base `{merged['base_model']}`" if merged["base_model"] else ""
        lines.append(f"{i}. **{merged['merge_method']}** ({merged['reference']}){base} of:")
        lines += [f"   - `{m['model']}` {m['parameters'] or ''}".rstrip() for m in merged["models"]]
    lines += ["", "## Configuration", "", "```yaml", yaml.safe_dump(config, sort_keys=False).strip(), "```", ""]
    return "\n".join(lines)
