"""Models: an architecture registry with size presets, build/load/save, tokenizers and generation.

``registry.ARCHITECTURES`` maps an architecture name to its module (each exports ``KIND``, ``PRESETS``,
``DEFAULT_VOCAB`` and ``make_config``). Everything is a standard transformers model saved in the
``save_pretrained`` layout (safetensors), so hub ids and local folders load the same way.
"""
