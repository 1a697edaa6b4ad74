# Creates (once) and activates the project's virtual environment in .venv, reinstalling only when the
# requirement files change. Sourced by the other scripts; `bash scripts/venv.sh` only sets it up.
# Strict mode for scripts only: sourced in an interactive shell, `set -e` would stay on there and
# close the terminal at the next failing command.
case $- in
  *i*) ;;
  *) set -euo pipefail ;;
esac
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SSD_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
REQS="$ROOT/requirements-test.txt"
if [ ! -x "$VENV/bin/python" ]; then
  # TensorFlow 2.21 and the code need 3.11+: an older interpreter failed later, in pip.
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "[setup] error: $PYTHON is not Python 3.11 or newer ($("$PYTHON" --version 2>&1 | head -n 1)); set PYTHON=<a python3.11+> and run again" >&2
    exit 1
  fi
  echo "[setup] creating virtual environment in $VENV"
  "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.requirements.sha256"
NODEPS="$ROOT/requirements-nodeps.txt"
WANT="$(cat "$ROOT/requirements.txt" "$REQS" "$NODEPS" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "[setup] installing pinned requirements (first run only)"
  "$VENV/bin/python" -m pip install -qq --disable-pip-version-check -r "$REQS"
  "$VENV/bin/python" -m pip install -qq --disable-pip-version-check --no-deps -r "$NODEPS"
  echo "$WANT" > "$STAMP"
  echo "[setup] the README's other commands run in this environment: source $VENV/bin/activate"
else
  echo "[setup] reusing $VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
cd "$ROOT"
# TensorFlow start-up chatter (CUDA probes, oneDNN banners) is noise here; errors still show.
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
