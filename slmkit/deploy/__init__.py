"""Deployment: export trained models to fast CPU runtimes (CTranslate2) that plug into ``generate()``.

``ctranslate2.export`` writes a self-contained runtime folder; ``ctranslate2.CT2Model`` runs it behind the
same ``generate_texts`` interface as a transformers model; ``stage`` is the ``export`` recipe stage (also
the ``slmkit export`` verb) that converts and checks parity against PyTorch.
"""
