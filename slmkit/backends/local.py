"""The ``local`` backend: a transformers model (folder or hub id) run in this process with ``generate()``."""

from __future__ import annotations

from typing import Any


class LocalBackend:
    """Loads the model once; ``generate`` batches prompts through :func:`slmkit.models.generate.generate`."""

    # One call at a time: generate() seeds torch's global RNG, and one model batches better than it threads.
    max_concurrency = 1

    def __init__(self, model: str, tokenizer: str | None = None):
        from slmkit.models.load import load_model, load_tokenizer

        self.name = f"local:{model}"
        self.model = load_model(model)
        self.tokenizer = load_tokenizer(tokenizer or model)

    def generate(self, prompts: list[str], cfg: Any) -> list[Any]:
        from slmkit.models.generate import generate

        return generate(self.model, self.tokenizer, prompts, cfg)
