"""Rich progress bars for long jobs (training, generation, evaluation); quiet when not on a terminal.

One place decides how progress looks so every stage shows the same columns.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def progress(transient: bool = False) -> Any:
    """A ``rich.progress.Progress`` with description, bar, counts, elapsed/remaining and a free text field."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    quiet = os.environ.get("SLMKIT_QUIET") == "1" or not sys.stderr.isatty()
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                    console=Console(stderr=True), transient=transient, disable=quiet)
