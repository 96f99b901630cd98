"""The worker's pure rules: what the stage shells decide, tested without a broker.

``screening`` (per-sender screening: decide, evolve, reopen), ``approvals`` (decisions to
send commands, deferred reply-tos), ``sendstate`` (at most once per reply; which prices
settle) and ``pipeline`` (the glue from one stage to the next, written once, and the
in-memory ``Pipeline`` the simulator, the audit and the benchmarks drive).

Pure (``tests/test_purity.py``): no clock, no randomness, no I/O; imports ``schemas``
and the campaign core (``actors``' pure modules) only.
"""
