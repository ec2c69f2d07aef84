# AI Energy Score's benchmark image, run through pytest-aienergyscore. Same command line as the AI Energy Score image:
#
#   docker run --gpus all --shm-size 1g -v "$PWD/results:/results" IMAGE \
#       --config-name text_generation backend.model=org/name backend.processor=org/name [scenario.num_samples=N] ...
#
# BENCHMARK_BACKEND picks how work is generated: optimum (default, optimum-benchmark's energy_star in its own
# environment), pytorch (transformers/diffusers in the plugin's process) or vllm (an OpenAI-compatible server at
# VLLM_ENDPOINT). Results, labels and the session plot are written to /results. Built by ./build.sh.
ARG BASE_IMAGE=pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BENCHMARK_BACKEND=optimum \
    AIENERGYSCORE_OPTIMUM_PYTHON=/opt/venv-optimum/bin/python \
    HF_HOME=/root/.cache/huggingface

WORKDIR /opt/pytest-aienergyscore
COPY pyproject.toml README.md LICENSE CHANGELOG.md ./
COPY pytest_aienergyscore/ ./pytest_aienergyscore/

# The plugin with the pytorch backend, the vllm client and the label fonts; torch (CUDA) comes with the base image.
RUN python -m pip install ".[pytorch,vllm,label]" && aienergyscore run --help >/dev/null
# optimum-benchmark in an environment of its own (it needs transformers<5), for BENCHMARK_BACKEND=optimum: the
# package's own command, as a user runs it (here at a fixed path, named by AIENERGYSCORE_OPTIMUM_PYTHON above).
RUN aienergyscore setup optimum --path /opt/venv-optimum

RUN mkdir -p /results
VOLUME ["/results"]
WORKDIR /results
ENTRYPOINT ["aienergyscore", "run", "--output", "/results"]
