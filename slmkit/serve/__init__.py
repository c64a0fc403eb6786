"""``slmkit serve``: an OpenAI-compatible HTTP server for small models, with an optional guard in front.

``engine.py`` (the engine seam, shared decoding parts, ``ENGINES``), ``continuous.py`` (iteration-level
batching of decoder-only transformers models), ``batched.py`` (request-level batching: encoder–decoder
transformers models, CTranslate2), ``protocol.py`` (OpenAI request/response/error formats), ``app.py``
(request handling and limits), ``routes.py`` (the FastAPI app), ``guard.py`` (the guard hook),
``metrics.py`` (Prometheus), ``cli.py`` (the command).
"""
