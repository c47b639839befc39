"""`python -m ruvectord.cli`: the same as the `ruvectord` console script."""

from __future__ import annotations

import sys

from ruvectord.cli import main

sys.exit(main())
