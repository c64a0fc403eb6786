"""``python -m slmkit`` is the ``slmkit`` command."""

import sys

from slmkit.cli import main

sys.exit(main())
