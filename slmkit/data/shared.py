"""Where the shared public data sets live (``../shared/data`` beside the checkout, or ``$SLMKIT_DATA``).

Data is read in place and never copied into the repository. Tests and benchmarks call
:func:`require_shared` to skip cleanly, with a reason, when a data set is absent.
"""

from __future__ import annotations

import os
from pathlib import Path


def shared_data_dir() -> Path:
    """``$SLMKIT_DATA`` if set, else the first ``shared/data`` found beside the cwd or the source tree."""
    if os.environ.get("SLMKIT_DATA"):
        return Path(os.environ["SLMKIT_DATA"])
    here = Path(__file__).resolve()
    candidates = [Path.cwd() / "../shared/data", Path.cwd() / "shared/data"]
    candidates += [parent / "shared" / "data" for parent in here.parents]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    return (Path.cwd() / "../shared/data").resolve()


def shared_path(*parts: str) -> Path:
    """A path inside the shared data folder (it may not exist)."""
    return shared_data_dir().joinpath(*parts)
