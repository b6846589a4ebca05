#!/usr/bin/env bash
# The prepared GPU check for a session lent the H200 (see bench/gpu.py for what it measures).
# The device image has CUDA torch, transformers, accelerate and peft but not diffusers; carry
# it as a wheel. Here, once, in the repo root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl diffusers==0.42.1 torchao==0.18.0 bitsandbytes==0.50.2
# (without bitsandbytes the 24 GB card falls back to group-offload, slow and costly in budget)
# Then: run(command="bash bench/device.sh", carry=[".whl"], timeout_s=560).
# What it prints: the benchmark's table, the simulated cards and the goal lines; the rows
# land in $OUT/gpu.json.
set -euo pipefail
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 QEC_TINY_MODEL_DIR=/tmp/tiny-model
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv
python3 -c "import torch, diffusers, transformers; print(torch.__version__, diffusers.__version__, transformers.__version__)"
python3 bench/gpu.py --quick --budget-s 420 --json "${OUT:-/tmp}/gpu.json"
python3 -c "from pipelines.doctor import report; print('\n'.join(report()))"
