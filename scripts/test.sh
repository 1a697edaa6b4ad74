#!/usr/bin/env bash
# Sets up .venv (first run) and runs the whole test suite. Extra arguments go to pytest.
source "$(dirname "$0")/venv.sh"
exec python -m pytest -n "${SSD_TEST_WORKERS:-2}" "$@" tests
