#!/usr/bin/env bash
# Issue #11, point 5: the learning test (counting, visible in the image) and the anchors-only test (the class
# only in the 64-d anchors; with and without a TLM) at a realistic width, on CUDA in bf16 autocast, through
# the real path (shards -> model.train both stages -> model.eval generate). About 2-4 minutes on one
# H100 / H200. Run from the repo root on a machine with CUDA + PyTorch and no network; the missing
# packages travel as wheels in .whl/ (transformers, peft, pydantic, ...: see bench/RESULTS.md):
#     bash bench/gpu_learning.sh            # -> $OUT/gpu_learning.json (every figure) + $OUT/gpu_learning.log
# WIDTH / LAYERS / STEPS / LR override the size and schedule (default 1024 x 4, 400 + 400 steps at lr 1e-3 per
# run: at width 1024 the CPU bench's 3e-3 / 2e-3 overshoots and counting stays at the majority answer).
set -euo pipefail
OUT="${OUT:-bench/out}"
mkdir -p "$OUT"
LOG="$OUT/gpu_learning.log"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
} 2>&1 | tee "$LOG"
# shellcheck disable=SC2086
python3 -m bench.learning --device "${DEVICE:-cuda}" --width "${WIDTH:-1024}" --layers "${LAYERS:-4}" \
  --steps ${STEPS:-400 400} --lr ${LR:-1e-3 1e-3} --work /tmp/gpu_learning --out "$OUT/gpu_learning.json" ${EXTRA:-} 2>&1 \
  | tr '\r' '\n' | sed -u '/it\/s/d' | tee -a "$LOG"
