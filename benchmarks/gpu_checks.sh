#!/usr/bin/env bash
# leanvl's GPU checks and benchmarks in one pass (what docs/benchmarks.md's GPU section records).
#
#   OUT=gpu_out bash benchmarks/gpu_checks.sh
#
# Needs a CUDA build of torch and leanvl's dependencies; run from the repository root (leanvl is
# imported from src/, no install needed). Nothing here decodes video, so on a machine without
# PyAV an empty stand-in `av` module on PYTHONPATH is enough (what the 2026-12-04 H200 run used,
# with omegaconf carried as a wheel). Each step has its own time
# limit so that a slow step (FlexAttention compiles one kernel per token count) cannot starve the
# ones after it; the steps run in order of importance and append their output to $OUT/gpu.log (results: $OUT/*.json).
set -uo pipefail
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
step() {  # step SECONDS NAME COMMAND...: run with a time limit, append the output to gpu.log
    local limit=$1 name=$2
    shift 2
    echo "=== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*" | tee -a "$OUT/gpu.log"
    timeout "$limit" "$@" >>"$OUT/gpu.log" 2>&1
    echo "=== $name exit $?" | tee -a "$OUT/gpu.log"
}

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    $py -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)"
} 2>&1 | tee "$OUT/gpu.log"

# 1. correctness: flex (compiled kernel) and gather against dense, forward and backward
step "${T_TESTS:-120}" tests $py -m pytest -q -p no:cacheprovider tests/gpu
# 2. Video-Panda: end-to-end answer with a 7B Llama (random weights), 8 frames of 720p
step "${T_ANSWER:-100}" videopanda_answer $py benchmarks/videopanda_answer_latency.py \
    --device cuda --dtype bfloat16 --llm 7b --runs 3 --json "$OUT/videopanda_answer.json"
# 3. Video-Panda's STAB + projector against a ViT-L/14 encoder (the paper's Table 3 on a GPU)
step "${T_VIT:-45}" videopanda_vs_vit $py benchmarks/videopanda_vs_vit.py \
    --device cuda --dtype bfloat16 --runs 10 --vit-runs 10 --json "$OUT/videopanda_vs_vit.json"
# 4. All-in-one-B inference
step "${T_ALLINONE:-40}" allinone $py -m leanvl bench model allinone_b --device cuda \
    --dtype bfloat16 --frames 3,8 --batch 1,32 --runs 10 --warmup 3 --json "$OUT/allinone.json"
# 5. SViTT-B: sparse (gather) against dense, training step then inference; FlexAttention in
#    its own runs, so that a kernel that fails to build or compiles slowly loses only its rows
for mode in train infer; do
    frames=$([ $mode = train ] && echo "${SVITT_TRAIN_FRAMES:-4,8}" || echo "${SVITT_INFER_FRAMES:-8,16}")
    step "${T_SVITT:-60}" "svitt_$mode" $py -m leanvl bench model svitt_base --device cuda \
        --dtype bfloat16 --frames "$frames" --compare dense --mode $mode --runs 5 --warmup 2 \
        --json "$OUT/svitt_$mode.json"
    step "${T_SVITT_FLEX:-150}" "svitt_${mode}_flex" $py -m leanvl bench model svitt_base \
        --device cuda --dtype "${FLEX_DTYPE:-float32}" --frames "$frames" --compare flex \
        --mode $mode --runs 5 --warmup 2 --json "$OUT/svitt_${mode}_flex.json"
    # the tile-aligned layout: 64-token tiles, one per 56-token block (fewer tiles computed)
    LEANVL_FLEX_TILED=1 step "${T_SVITT_FLEX:-150}" "svitt_${mode}_flex_tiled" $py -m leanvl \
        bench model svitt_base --device cuda --dtype "${FLEX_DTYPE:-float32}" --frames "$frames" \
        --compare flex --mode $mode --runs 5 --warmup 2 --json "$OUT/svitt_${mode}_flex_tiled.json"
done
