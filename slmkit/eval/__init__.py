"""Evaluation: answer extractors (``str -> str | None``), metrics and evaluation stages."""
