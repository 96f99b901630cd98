#!/usr/bin/env bash
# The benchmark command (README: "Benchmarks"): a table of the running system's numbers.
#   bash tests/benchmarks/run.sh            quick run, about 3 minutes
#   bash tests/benchmarks/run.sh --full     the full run
#   bash tests/benchmarks/run.sh --help     options (sizes, durations, rows, --profile)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -x .venv/bin/pytest ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --upgrade pip
    .venv/bin/pip install --quiet -e ".[test,bench]"
fi
export RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled
exec .venv/bin/python tests/benchmarks/bench_pipeline.py "$@"
