"""slmkit: build, train, distil, merge, align, evaluate, guard, benchmark and serve small language models.

Importing ``slmkit`` is cheap: torch and transformers are imported only inside the functions that use
them, so the command line starts instantly. See ``slmkit --help`` and the recipes in ``recipes/``.
"""

__version__ = "0.1.0"
