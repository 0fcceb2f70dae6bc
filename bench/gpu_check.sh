#!/usr/bin/env bash
# The trainer's GPU check on one H100 / H200 / A100 (< 8 minutes): JSON on stdout, and in $OUT
# when set. See bench/gpu_check.py for what it runs. Not yet run on a GPU.
#   OUT=gpu_check.json bench/gpu_check.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-python}"
exec timeout 480 "$PY" "$here/gpu_check.py" "$@"
