#!/usr/bin/env bash
# Set up (once) and run antirelou on this machine: a virtualenv in .venv with the project
# installed, then `antirelou up` (embedded broker, local Ray, Faust worker + webhook).
# Arguments go to `antirelou up`, e.g. `bash infra/up.sh --insecure-dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/antirelou ] || [ pyproject.toml -nt .venv/.installed ]; then
    echo "antirelou: installing into .venv (first run only) ..."
    python3 -m venv .venv
    .venv/bin/pip install --quiet --upgrade pip
    .venv/bin/pip install --quiet -e ".[test]"
    touch .venv/.installed
fi
export RAY_USAGE_STATS_ENABLED=0
exec .venv/bin/antirelou up --config "${ANTIRELOU_CONFIG:-infra/campaigns.example.toml}" "$@"
