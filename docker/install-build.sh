#!/usr/bin/env bash
# The models stage of the image: a virtual environment with the CPU build of torch and the `train`
# extra at the pinned versions, enough to run `faceverify models build`. The image and
# .ci/replay-cpu-image run this same script, so what CI checks is what the image does.
#
#   docker/install-build.sh VENV
# TORCH_INDEX_URL: where the CPU torch wheel comes from (the image uses PyTorch's CPU index; empty:
# pip's configured indexes).
set -euo pipefail
venv=${1:?usage: install-build.sh VENV}
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3.11}

"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --no-cache-dir --disable-pip-version-check --quiet)
"${pip[@]}" --upgrade pip==26.3
torch_source=()
if [ -n "${TORCH_INDEX_URL:-}" ]; then torch_source=(--index-url "$TORCH_INDEX_URL"); fi
"${pip[@]}" --no-deps "${torch_source[@]}" torch==2.13.0
# Every other package pinned, dependencies included: --no-deps keeps pip from resolving anew (and
# facenet-pytorch from pulling its old torch; only its MTCNN weight files are used).
"${pip[@]}" --no-deps -r "$here/requirements-build.txt"
"${pip[@]}" --no-deps --no-build-isolation "$here/.."
# facenet-pytorch's own pins are known to be unmet (see above); anything else pip finds is a failure.
problems=$("$venv/bin/python" -m pip check 2>&1 | grep -v -e '^facenet-pytorch ' -e '^No broken requirements' || true)
if [ -n "$problems" ]; then
    echo "$problems" >&2
    exit 1
fi
"$venv/bin/python" -c 'import onnx, onnxscript, torch, training.build' # the build's imports resolve
