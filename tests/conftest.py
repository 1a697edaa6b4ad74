"""What many test files share: the project root and running a script as a user does."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def script_env(**extra):
    """The environment scripts run in: the project importable, TF quiet, no GPU."""
    return dict(
        os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='', **extra
    )


def run_script(script, *args, timeout=400, **kwargs):
    """Runs `python <ROOT>/<script> args...` from the project root; returns the CompletedProcess
    (text stdout / stderr captured)."""
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, script), *args],
        cwd=ROOT,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )
