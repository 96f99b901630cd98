"""Moved to ``streams.simulate.scenarios`` (live mode: ``streams.simulate.live``); this name
stays importable and is the same module."""

import sys

from streams.simulate import scenarios

sys.modules[__name__] = scenarios
