"""``python -m streams.simulate``: see ``streams.simulate.command``."""

import sys

from streams.simulate.command import main

sys.exit(main())
