#!/usr/bin/env bash
# The LM engine benchmark on a GPU machine (runs in under 5 minutes on an H100/H200):
# the same ratios as on CPU, measured on CUDA in bf16, plus the achieved fraction of the GPU's
# measured bf16 matmul peak. Needs torch and transformers (the device image has both).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
timeout 280 python3 bench/lm_engine.py --device cuda --gpu-peak
