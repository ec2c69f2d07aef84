#!/usr/bin/env bash
# Build the AI Energy Score image of pytest-aienergyscore from this repository.
#
#   ./build.sh [TAG] [docker build options...]      e.g. ./build.sh aienergyscore-pytest --no-cache
#
# BASE_IMAGE=... picks another CUDA PyTorch base image (default: the Dockerfile's).
set -euo pipefail
cd "$(dirname "$0")"
IMAGE="${1:-aienergyscore-pytest}"
if [ $# -gt 0 ]; then shift; fi

docker build ${BASE_IMAGE:+--build-arg "BASE_IMAGE=${BASE_IMAGE}"} -f Dockerfile -t "${IMAGE}" "$@" .

cat <<USAGE
built ${IMAGE}; run it as AI Energy Score's image is run:
  docker run --gpus all --shm-size 1g -v "\$PWD/results:/results" ${IMAGE} \\
      --config-name text_generation backend.model=openai/gpt-oss-20b backend.processor=openai/gpt-oss-20b
  # pytorch backend:  docker run --gpus all -e BENCHMARK_BACKEND=pytorch ...
  # vLLM server:      docker run --gpus all -e BENCHMARK_BACKEND=vllm -e VLLM_ENDPOINT=http://host:8000/v1 ...
USAGE
