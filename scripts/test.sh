#!/usr/bin/env bash
# Sets up .venv (first run), checks the code style (ruff, configured in pyproject.toml) and runs
# the whole test suite. Extra arguments go to pytest.
source "$(dirname "$0")/venv.sh"
echo "[lint] ruff check and ruff format --check"
ruff check --quiet .
ruff format --check --quiet .
exec python -m pytest -n "${SSD_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@" tests
