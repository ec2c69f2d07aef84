#!/usr/bin/env bash
# Create (or verify) a separate virtual environment holding optimum-benchmark
# 0.6.0 and what its `energy_star` scenario needs to run on the CPU.
#
# Usage: scripts/setup_optimum_env.sh [VENV_PATH]
#   VENV_PATH defaults to <repo root>/.venv-optimum
#
# Environment knobs:
#   PYTHON_BIN        interpreter used to create the venv (default: python3.11)
#   OPTIMUM_ENV_FORCE set to 1 to re-run the install even if the env works
#   OPTIMUM_ENV_FULL_CHECK set to 1 to re-import everything instead of trusting
#                     the stamp file (takes ~5-10 s: torch + transformers)
#
# Idempotent: when the venv already has the expected versions and a stamp file
# from a successful import check, the script prints "ready" and exits 0 in
# well under a second.
#
# torch is installed FIRST and pinned to 2.13.0: a CPU wheel of it is on this
# machine's disk (pip's find-links). Letting optimum-benchmark/accelerate pull a
# bare `torch` would download a multi-GB CUDA build instead.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${SCRIPT_DIR}/.." && pwd)"
VENV="${1:-${REPO_ROOT}/.venv-optimum}"
PYTHON_BIN="${PYTHON_BIN:-python3.11}"

TORCH_SPEC="torch==2.13.0"
OPTIMUM_SPEC="optimum-benchmark==0.6.0"
# Everything else energy_star needs on the CPU for text tasks.
# - transformers<5: optimum-benchmark 0.6.0 predates transformers 5.
# - datasets: core dep of optimum-benchmark; the scenario loads its dataset with it.
# - codecarbon: energy tracker (optimum-benchmark's `codecarbon` extra).
# - pillow: REQUIRED even for text tasks: optimum_benchmark's dataset
#   preprocessor (imported by the energy_star scenario) does `from PIL.Image
#   import Image` at import time, yet pillow is not a declared dependency.
# - diffusers: image generation (text-to-image) loads its pipeline with it; the
#   version AI Energy Score pins (0.35.2), which works with transformers 4.57 and
#   torch 2.13. optimum-benchmark imports it, when present, at start-up.
# - timm / torchvision: not needed (the tiny and leaderboard models used on the
#   CPU are transformers-native; optional imports).
EXTRA_SPECS=(
    "transformers<5"
    "datasets>=4.0.0,<6"
    "codecarbon>=3,<4"
    "pillow"
    "diffusers==0.35.2"
)
STAMP_NAME=".aienergyscore-optimum-env.ok"

log() { printf '[setup_optimum_env] %s\n' "$*" >&2; }

STAMP_CONTENT="${TORCH_SPEC} ${OPTIMUM_SPEC} ${EXTRA_SPECS[*]}"

check_versions() {
    # Cheap check (metadata only, no heavy imports).
    local py="${VENV}/bin/python"
    [[ -x "${py}" ]] || return 1
    "${py}" - <<'PY' >/dev/null 2>&1
import importlib.metadata as md
import sys
assert sys.version_info[:2] == (3, 11), sys.version
assert md.version("torch").startswith("2.13.0"), md.version("torch")
assert md.version("optimum-benchmark") == "0.6.0", md.version("optimum-benchmark")
assert int(md.version("transformers").split(".")[0]) < 5, md.version("transformers")
for dist in ("datasets", "codecarbon", "pillow", "accelerate", "hydra-core"):
    md.version(dist)
assert md.version("diffusers") == "0.35.2", md.version("diffusers")
PY
}

check_env() {
    # Full check: the versions, then every import the energy_star scenario needs.
    local py="${VENV}/bin/python"
    check_versions || return 1
    HF_HUB_OFFLINE=1 "${py}" - <<'PY' >/dev/null 2>&1
import torch  # noqa: F401
import transformers  # noqa: F401
import datasets  # noqa: F401
import codecarbon  # noqa: F401
import PIL  # noqa: F401
import diffusers.pipelines.auto_pipeline  # noqa: F401  (text-to-image)
from optimum_benchmark import (  # noqa: F401
    Benchmark, BenchmarkConfig, EnergyStarConfig, InlineConfig, ProcessConfig, PyTorchConfig,
)
from optimum_benchmark.scenarios.energy_star.scenario import EnergyStarScenario  # noqa: F401
PY
}

if [[ "${OPTIMUM_ENV_FORCE:-0}" != "1" ]]; then
    if [[ "${OPTIMUM_ENV_FULL_CHECK:-0}" != "1" && -f "${VENV}/${STAMP_NAME}" ]] \
        && [[ "$(cat "${VENV}/${STAMP_NAME}")" == "${STAMP_CONTENT}" ]] && check_versions; then
        log "ready: ${VENV} (nothing to do)"
        exit 0
    fi
    if check_env; then
        printf '%s' "${STAMP_CONTENT}" >"${VENV}/${STAMP_NAME}"
        log "ready: ${VENV} (nothing to do; import check passed)"
        exit 0
    fi
fi
rm -f "${VENV}/${STAMP_NAME}"

start_ts=$(date +%s)

if ! command -v "${PYTHON_BIN}" >/dev/null 2>&1; then
    log "error: ${PYTHON_BIN} not found"
    exit 1
fi

if [[ -x "${VENV}/bin/python" ]]; then
    venv_minor="$("${VENV}/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    if [[ "${venv_minor}" != "3.11" ]]; then
        log "error: ${VENV} exists but runs Python ${venv_minor}; remove it or pass another path"
        exit 1
    fi
elif [[ -e "${VENV}" && -n "$(ls -A "${VENV}" 2>/dev/null)" ]]; then
    log "error: ${VENV} exists, is not empty and is not a venv; remove it or pass another path"
    exit 1
else
    log "creating venv ${VENV} with ${PYTHON_BIN}"
    "${PYTHON_BIN}" -m venv "${VENV}"
fi

PIP=("${VENV}/bin/python" -m pip --disable-pip-version-check)
PIP_FLAGS=()
# The CPU torch wheel lies here; pip's global config usually already points at
# it, but say so explicitly in case that config is missing.
if [[ -d /opt/wheels ]]; then
    PIP_FLAGS+=(--find-links /opt/wheels)
fi

log "installing ${TORCH_SPEC} (CPU wheel) first"
"${PIP[@]}" install ${PIP_FLAGS[@]+"${PIP_FLAGS[@]}"} "${TORCH_SPEC}"

# Re-state the torch pin so that no dependency can swap it for a CUDA build.
log "installing ${OPTIMUM_SPEC} ${EXTRA_SPECS[*]}"
"${PIP[@]}" install ${PIP_FLAGS[@]+"${PIP_FLAGS[@]}"} "${TORCH_SPEC}" "${OPTIMUM_SPEC}" "${EXTRA_SPECS[@]}"

if ! check_env; then
    log "error: environment check failed; details:"
    HF_HUB_OFFLINE=1 "${VENV}/bin/python" -c \
        "import torch, transformers, datasets, codecarbon, optimum_benchmark; from optimum_benchmark import EnergyStarConfig"
    exit 1
fi

printf '%s' "${STAMP_CONTENT}" >"${VENV}/${STAMP_NAME}"
end_ts=$(date +%s)
log "ready: ${VENV} (installed in $((end_ts - start_ts)) s)"
