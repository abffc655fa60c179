#!/usr/bin/env bash
# Regenerates every result in benchmarks/results (run from the repo root: `make bench`).
# Each command exports the model, verifies it, measures this machine's sgemm peak, and times every
# backend on the same feeds. Expect about 15 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
M=${MODELPORT:-.venv/bin/modelport}
OUT=benchmarks/results
TORCH="eager,torchscript,torch-compile"
RUNTIMES="ort:cpu,ort:cpu@disabled,openvino:f32,openvino:default"

$M bench demo:minilm --backends "$TORCH,$RUNTIMES" --batch 1,8 --seq 128 --peak \
    --json $OUT/minilm.json --report $OUT/minilm.md

$M bench benchmarks/models.py:bert_base --input input_ids:batch,seq:int64:0..30522 \
    --input attention_mask:batch,seq:int64:0..2 --dim batch=1..2 --dim seq=1..128 \
    --backends "eager,torchscript,$RUNTIMES" --batch 1 --seq 128 --peak \
    --json $OUT/bert-base.json --report $OUT/bert-base.md

$M bench benchmarks/models.py:resnet50 --input x:batch,3,s,s --dim batch=1..2 --dim s=64..224 \
    --backends "eager,torchscript,$RUNTIMES" --batch 1 --shape s=224 --peak \
    --json $OUT/resnet50.json --report $OUT/resnet50.md

$M bench benchmarks/models.py:gpt2_small --input input_ids:batch,seq:int64:0..50257 \
    --input attention_mask:batch,seq:int64:0..2 --dim batch=1..2 --dim seq=1..128 \
    --backends "eager,torchscript,$RUNTIMES" --batch 1 --seq 128 --peak \
    --json $OUT/gpt2-small.json --report $OUT/gpt2-small.md

.venv/bin/python benchmarks/summarize.py $OUT > $OUT/SUMMARY.md
