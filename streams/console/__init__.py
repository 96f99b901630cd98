"""What operators look at: ``/dashboard`` and ``/metrics`` (``ops``, the shell; ``metrics``,
the pure projection of the journal behind them; ``web/``, the page and its script) and the
audit's HTML page (``audit_html``, pure). Imports ``schemas``, the campaign core and
``infra``; nothing else in ``streams``.
"""
