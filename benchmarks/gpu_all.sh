#!/usr/bin/env bash
# The one prepared accelerator run: every question of benchmarks/gpu_throughput.py at reduced repeats, one JSON, in
# at most 8 minutes of device time on one Hopper GPU (the whole run is killed at 8 minutes; what finished is kept in
# the log). Sora MLM vs BertForMaskedLM and ModernBertForMaskedLM at 0% and 25% padding, Sora causal LM vs
# LlamaForCausalLM, and generate() at batch 1 and 32 (dynamic / static cache, compiled).
#
#   bash benchmarks/gpu_all.sh                                   # on the GPU machine
#   bash benchmarks/gpu_all.sh --preset tiny --device cpu        # the smoke run CI makes (tests/test_benchmarks.py)
set -euo pipefail

preset=base
device=cuda
out=benchmarks/results/gpu_all.json
budget_s=480
while [[ $# -gt 0 ]]; do
    case "$1" in
        --preset) preset="$2"; shift 2 ;;
        --device) device="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --budget-s) budget_s="$2"; shift 2 ;;
        *) echo "gpu_all.sh: unknown argument $1 (--preset, --device, --out, --budget-s)" >&2; exit 2 ;;
    esac
done
python="${PYTHON:-python}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

mkdir -p "$(dirname "$out")"
timeout --signal=TERM --kill-after=10 "$budget_s" "$python" "$here/gpu_throughput.py" all \
    --preset "$preset" --device "$device" --steps 10 --warmup 3 --new-tokens 128 --out "$out"
echo "gpu_all.sh: wrote $out"
