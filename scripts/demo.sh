#!/usr/bin/env bash
# Sets up .venv (first run) and runs the main job on the built-in synthetic dataset.
# Arguments go to run_demo.py (--fresh, --num_images, --work_dir, ...).
source "$(dirname "$0")/venv.sh"
exec python run_demo.py "$@"
