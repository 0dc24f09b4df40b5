#!/usr/bin/env bash
# The runtime stage of the image: a virtual environment with the service only (no torch), on the
# CPU pair (onnxruntime, faiss-cpu) or the GPU pair (onnxruntime-gpu, faiss-gpu-cu12), every package
# pinned. The image and .ci/replay-cpu-image run this same script.
#
#   docker/install-runtime.sh VENV cpu|gpu
set -euo pipefail
venv=${1:?usage: install-runtime.sh VENV cpu|gpu}
flavour=${2:?usage: install-runtime.sh VENV cpu|gpu}
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3.11}
case "$flavour" in cpu | gpu) ;; *) echo "flavour must be cpu or gpu, not $flavour" >&2; exit 2 ;; esac

"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --no-cache-dir --disable-pip-version-check --quiet)
"${pip[@]}" --upgrade pip==26.3
"${pip[@]}" --no-deps -r "$here/requirements-$flavour.txt"
# The package itself without its declared dependencies: those name the CPU pair, which the GPU
# image must not have (onnxruntime and onnxruntime-gpu share one module folder, as do the faiss pair).
"${pip[@]}" --no-deps --no-build-isolation "$here/.."
if [ "$flavour" = cpu ]; then
    "$venv/bin/python" -m pip check
fi
# The modules the service imports, from this flavour's packages (pip check cannot vouch for the GPU
# pair: the package's metadata names the CPU one).
"$venv/bin/python" - "$flavour" <<'PY'
import sys

import faiss
import onnxruntime

import app.main  # noqa: F401  (the whole service imports)
import app.gallery.postgres  # noqa: F401  (the shared store, FV_DATABASE_URL: psycopg and its pool)
import pymilvus  # noqa: F401  (the shared index, FV_VECTOR_INDEX=milvus)

providers = onnxruntime.get_available_providers()
if sys.argv[1] == "gpu":
    assert "CUDAExecutionProvider" in providers, f"onnxruntime-gpu is not the onnxruntime here: {providers}"
    assert hasattr(faiss, "StandardGpuResources"), "faiss here has no GPU support"
print(f"runtime ready: onnxruntime {onnxruntime.__version__} {providers}, faiss {faiss.__version__}")
PY
