"""``python -m streams.cli ...``: the same as the ``antirelou`` command."""

import sys

from streams.cli import main

sys.exit(main())
