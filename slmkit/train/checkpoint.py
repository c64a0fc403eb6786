"""Training checkpoints with exact resume: model, optimizer, scheduler, RNG states and the step counter.

A checkpoint folder holds ``model.safetensors``, ``optimizer.pt`` (tensors only, loaded with
``weights_only=True``), ``rng.safetensors`` + ``rng.json`` (torch, CUDA, Python and NumPy generators) and
``state.json`` (step, data position, the stage fingerprint and free-form extras). It is written to a temp
folder and renamed into place, so a kill during saving leaves the previous checkpoint usable. A
checkpoint whose fingerprint differs from the current run's (config or inputs changed) is ignored.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from slmkit.artifacts import atomic_dir, atomic_write_json, read_json


def save_checkpoint(path: str | Path, *, model: Any, optimizer: Any, scheduler: Any, step: int,
                    fingerprint: str, extra: dict[str, Any] | None = None) -> None:
    """Write a complete checkpoint atomically."""
    import numpy as np
    import torch
    from safetensors.torch import save_file, save_model

    with atomic_dir(path) as tmp:
        save_model(model, str(tmp / "model.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            for i, state in enumerate(torch.cuda.get_rng_state_all()):
                rng[f"cuda{i}"] = state
        save_file(rng, str(tmp / "rng.safetensors"))
        np_state = np.random.get_state()
        py_state = random.getstate()
        (tmp / "rng.json").write_text(json.dumps({
            "python": [py_state[0], list(py_state[1]), py_state[2]],
            "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        }))
        atomic_write_json(tmp / "scheduler.json", scheduler.state_dict())
        atomic_write_json(tmp / "state.json", {"step": step, "fingerprint": fingerprint, **(extra or {})})


def load_checkpoint(path: str | Path, *, model: Any, optimizer: Any, scheduler: Any,
                    fingerprint: str) -> dict[str, Any] | None:
    """Restore everything in place and return ``state.json``; ``None`` if absent or for another run."""
    import numpy as np
    import torch
    from safetensors.torch import load_file, load_model

    path = Path(path)
    if not (path / "state.json").exists():
        return None
    state = read_json(path / "state.json")
    if state.get("fingerprint") != fingerprint:
        return None
    load_model(model, str(path / "model.safetensors"))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(read_json(path / "scheduler.json"))
    rng = load_file(str(path / "rng.safetensors"))
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available():
        torch.cuda.set_rng_state_all([rng[k] for k in sorted(rng) if k.startswith("cuda")])
    states = read_json(path / "rng.json")
    py = states["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npy = states["numpy"]
    np.random.set_state((npy[0], np.array(npy[1], dtype=np.uint32), *npy[2:]))
    return state
