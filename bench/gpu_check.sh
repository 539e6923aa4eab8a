#!/usr/bin/env bash
# The LM engine's GPU bench (bench/gpu_engine.py, under 4 minutes on one H100/H200): throughput of
# the engine's passes at random 1B and 8B Llama shapes in bf16 against HF batched logits, with
# TFLOP/s and the share of the measured bf16 matmul peak, then bf16 verdicts against generate()
# and float32 on a model trained on canaries. Needs torch, transformers and triton (the device
# image has them); no download. The CPU figures stay in bench/lm_engine.py.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
python3 -c "import triton; print('triton', triton.__version__)" || echo "triton: not importable"
timeout 250 python3 bench/gpu_engine.py
