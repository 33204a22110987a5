#!/usr/bin/env bash
# The README's test command (and what .ci/run calls): set up .venv from the lock if needed, then lint,
# format check, type check and the test suite (default tiers: unit + integration; `slow` is opt-in:
# SVD_TEST_ARGS="-m slow" bash scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_browser.sh || echo "note: chromium not installed; browser tests will be skipped" >&2
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 MLFLOW_ENABLE_TELEMETRY=false
echo "== ruff check"; .venv/bin/ruff check .
echo "== ruff format --check"; .venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy
echo "== pytest"
# shellcheck disable=SC2086
# Two workers on two cores; a module runs whole on one worker (module-scoped fixtures stay shared).
exec .venv/bin/pytest -m "not slow" -n 2 --dist loadfile --durations=25 ${SVD_TEST_ARGS:-} "$@"
