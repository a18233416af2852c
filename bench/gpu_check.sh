#!/usr/bin/env bash
# Issue #13, the GPU run in one script (about 6 minutes on one H100 / H200): the 7B-sized stage-1 step at
# batch 1, 4 and 8 with and without gradient checkpointing (padding share, tokens/s, MFU, peak memory),
# the TLM overhead at batch 1 and 4 (bench/gpu_step.py), then the tiny two-stage train + eval on CUDA.
# Run from the repo root on a bare CUDA + PyTorch image with no network; what it lacks travels as wheels
# in .whl/ (transformers, peft, pydantic, ...; never committed):
#     bash bench/gpu_check.sh     # -> $OUT/gpu_step.json, $OUT/gpu_tiny_train.json, $OUT/gpu_check.log
# STEP_ARGS adds flags to bench.gpu_step (e.g. "--batches 1 4 --grad-ckpt off", or "--compiled-steps": every
# configuration with the decoder layers compiled); STEP_ONLY=1 skips part 2. DEVICE=cpu STEP_ARGS=--tiny
# runs the whole script on a CPU in about a minute (how tests/bench/test_gpu_check.py checks it).
set -euo pipefail
OUT="${OUT:-bench/out}"
DEVICE="${DEVICE:-cuda}"
WORK="${WORK:-/tmp/gpu_check}"
mkdir -p "$OUT" "$WORK"
LOG="$OUT/gpu_check.log"
PY="${PYTHON:-python3}"
# wheels where the image lacks the trainer's packages or has other versions than the ones the trainer is
# tested with here (transformers / peft: their wheels in .whl/ name the versions); a machine with the same
# versions (or with no .whl/) installs nothing
want() { local f; f=$(compgen -G ".whl/$1-*.whl" | head -1) || return 0; f=${f#.whl/$1-}; echo "${f%%-*}"; }
if compgen -G ".whl/*.whl" >/dev/null && ! "$PY" -c "
import sys, transformers, peft
sys.exit(0 if (transformers.__version__, peft.__version__) == ('$(want transformers)', '$(want peft)') else 1)
" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
  "$PY" -c "import importlib.util as u; print('flash_attn installed:', u.find_spec('flash_attn') is not None)"
} 2>&1 | tee "$LOG"

# 1. one 7B-sized model built once: the step benchmark, the TLM overhead, the profiled step and the
#    variants (whole logits, no LoRA dropout, torch.compile; bench/gpu_profile.py), about 4 minutes;
#    gpu_step.json is rewritten after every row, so a run cut short keeps what it measured
# shellcheck disable=SC2086
timeout "${STEP_TIMEOUT:-330}" "$PY" -m bench.gpu_step --device "$DEVICE" --out "$OUT/gpu_step.json" ${STEP_ARGS:-} 2>&1 \
  | grep -v Warning | tee -a "$LOG" || echo "bench.gpu_step did not finish (see the log)" | tee -a "$LOG"

[ -n "${STEP_ONLY:-}" ] && exit 0  # STEP_ONLY=1: the step benchmark alone

# 2. the tiny two-stage train + eval on the device (about 1 minute): fixture shards, model/configs/tiny.yaml
"$PY" -c "
from pathlib import Path
from tests.model.data_fixtures import write_dataset
write_dataset(Path('$WORK/data'), ['train'] * 16 + ['validation'] * 4 + ['test'] * 4, rows_per_file=8)
"
"$PY" -m model.train --config model/configs/tiny.yaml --data "$WORK/data" --output-dir "$WORK/train" 2>&1 \
  | tr '\r' '\n' | sed -u '/it\/s/d;/s\/it/d' | tee -a "$LOG"
"$PY" -m model.eval --checkpoint "$WORK/train/stage2/final" --split test --limit 8 --out "$WORK/eval" 2>&1 \
  | tee -a "$LOG"
"$PY" - "$WORK" "$OUT/gpu_tiny_train.json" <<'PYEOF'
import json, sys, torch
from pathlib import Path
work, out = Path(sys.argv[1]), Path(sys.argv[2])
res = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
for stage in ("stage1", "stage2"):
    rows = [json.loads(x) for x in (work / "train" / stage / "metrics.jsonl").read_text().splitlines() if x]
    losses = [r["loss"] for r in rows if "loss" in r]
    res[stage] = {"steps": len(losses), "first_loss": losses[0], "last_loss": losses[-1],
                  "tokens_per_s_median": sorted(r["tokens_per_s"] for r in rows if "tokens_per_s" in r)[len(losses) // 2],
                  "eval_losses": [r["eval_loss"] for r in rows if "eval_loss" in r]}
res["eval_files"] = {p.name: json.loads(p.read_text()) for p in (work / "eval").glob("*.json")}
out.write_text(json.dumps(res, indent=2) + "\n")
print("wrote", out)
PYEOF
