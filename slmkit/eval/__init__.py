"""Evaluation (arXiv 2502.11569): task files and readers, prompting strategies, extractors, metrics, judges,
perturbations, step checking, compressed variants, the results store, the ``eval`` stage and CLI."""
