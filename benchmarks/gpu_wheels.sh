#!/usr/bin/env bash
# The wheels benchmarks/gpu.py needs on the GPU device, packed into carry folders of under 56 MiB each.
#
# The device has Python 3.12 with torch (and its CUDA 13 / cuDNN 9 libraries), numpy, pillow, httpx, anyio,
# click, h11, packaging, protobuf, prometheus-client, uvloop, threadpoolctl and a CPU onnxruntime, but no
# network: this fetches the rest of the service's runtime at the pins of docker/requirements-cpu.txt, and
# onnxruntime-gpu built for CUDA 13. faiss stays faiss-cpu: faiss-gpu-cu12 needs CUDA 12's cuBLAS (a 554 MiB
# wheel) that the device lacks, and there is no CUDA 13 faiss-gpu on PyPI.
#
# Run from the repository root: bash benchmarks/gpu_wheels.sh
# Writes build/gpu/wheels/ (the wheels and SHA256SUMS), build/gpu/carry-NN/ (one device call each) and
# build/gpu/carry-plan.txt (the folders in order). Wheels over 50 MiB travel as NAME.part-aa, -ab, ...:
# `cat NAME.part-* > NAME` restores them; the last folder also holds SHA256SUMS to check them with.
set -euo pipefail

OUT=build/gpu
PIP=${PIP:-.venv/bin/pip}
CAP=$((56 * 1024 * 1024))    # what one carry folder may hold
PIECE=$((50 * 1024 * 1024))  # wheels larger than this are split into pieces of this size
ORT_GPU=onnxruntime-gpu==1.31.1  # the newest on PyPI; 1.27 and later are built for CUDA 13
# The service's runtime beyond what the device has (names as docker/requirements-cpu.txt spells them).
PINNED=(
  faiss-cpu fastapi fastapi-offline starlette opentelemetry-api annotated-doc pydantic pydantic_core
  annotated-types typing-inspection typing_extensions pydantic-settings python-dotenv python-multipart
  uvicorn httptools flatbuffers
)

specs=("$ORT_GPU")
for name in "${PINNED[@]}"; do
  pin=$(grep -ix "$name==.*" docker/requirements-cpu.txt)  # no pin: set -e stops here
  specs+=("$pin")
done

rm -rf "$OUT" && mkdir -p "$OUT/wheels" "$OUT/items"
"$PIP" download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$OUT/wheels" "${specs[@]}"
(cd "$OUT/wheels" && sha256sum -- *.whl > SHA256SUMS)

# What travels: small wheels whole, big ones in pieces.
for wheel in "$OUT"/wheels/*.whl; do
  if (($(stat -c %s "$wheel") > PIECE)); then
    split -b "$PIECE" "$wheel" "$OUT/items/$(basename "$wheel").part-"
  else
    cp "$wheel" "$OUT/items/"
  fi
done

# First fit, largest first: each item goes into the first folder with room for it.
declare -a used=()
folders=0
while read -r size item; do
  for ((i = 1; i <= folders; i++)); do
    ((used[i] + size <= CAP)) && break
  done
  if ((i > folders)); then
    folders=$i
    used[i]=0
    mkdir "$(printf '%s/carry-%02d' "$OUT" "$i")"
  fi
  used[i]=$((used[i] + size))
  mv "$item" "$(printf '%s/carry-%02d/' "$OUT" "$i")"
done < <(find "$OUT/items" -type f -printf '%s %p\n' | sort -k1,1nr -k2,2)
rmdir "$OUT/items"
cp "$OUT/wheels/SHA256SUMS" "$(printf '%s/carry-%02d/' "$OUT" "$folders")"

# The plan: one line per folder, in the order to carry them.
for ((i = 1; i <= folders; i++)); do
  folder=$(printf '%s/carry-%02d' "$OUT" "$i")
  printf '%s %d bytes: %s\n' "$folder" "$(du -cb "$folder"/* | tail -1 | cut -f1)" \
    "$(cd "$folder" && ls | tr '\n' ' ')"
done > "$OUT/carry-plan.txt"
cat "$OUT/carry-plan.txt"
