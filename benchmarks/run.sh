#!/usr/bin/env bash
# Regenerates every result in benchmarks/results (run from the repo root: `make bench`).
# Each bench command exports the model, verifies it, measures this machine's sgemm peak, and times every
# backend on the same feeds; each optimize command tries every candidate, holds it to cos>=0.999 per
# output on held-out data (real sentences for MiniLM, generated feeds for the random-weight models) and
# times them against eager in one run (the "optimized" column of SUMMARY.md); the serve part measures
# modelport serve against Triton, MLServer and KServe (benchmarks/serve/run.py). Expect about an hour on
# 2 cores, on a quiet machine (bench --strict refuses a busy one).
set -euo pipefail
cd "$(dirname "$0")/.."
M=${MODELPORT:-.venv/bin/modelport}
OUT=benchmarks/results
TORCH="eager,torchscript,torch-compile"
STRICT=${STRICT---strict}  # STRICT= make bench: time even on a busy machine (the report then says so)
RUNTIMES="ort:cpu,ort:cpu@disabled,openvino:f32,openvino:default"
BUILD=build/bench
PARTS=${PARTS:-bench,optimize,serve,scale,generate}  # PARTS=optimize benchmarks/run.sh: only the optimize runs
mkdir -p $BUILD

if [[ $PARTS == *bench* ]]; then

$M bench demo:minilm --backends "$TORCH,$RUNTIMES" --batch 1,8 --seq 128 --peak $STRICT \
    --json $OUT/minilm.json --report $OUT/minilm.md

$M bench benchmarks/models.py:bert_base --input input_ids:batch,seq:int64:0..30522 \
    --input attention_mask:batch,seq:int64:0..2 --dim batch=1..2 --dim seq=1..128 \
    --backends "eager,torchscript,$RUNTIMES" --batch 1 --seq 128 --peak $STRICT \
    --json $OUT/bert-base.json --report $OUT/bert-base.md

$M bench benchmarks/models.py:resnet50 --input x:batch,3,s,s --dim batch=1..2 --dim s=64..224 \
    --backends "eager,torchscript,$RUNTIMES" --batch 1 --shape s=224 --peak $STRICT \
    --json $OUT/resnet50.json --report $OUT/resnet50.md

$M bench benchmarks/models.py:gpt2_small --input input_ids:batch,seq:int64:0..50257 \
    --input attention_mask:batch,seq:int64:0..2 --dim batch=1..2 --dim seq=1..128 \
    --backends "eager,torchscript,$RUNTIMES" --batch 1 --seq 128 --peak $STRICT \
    --json $OUT/gpt2-small.json --report $OUT/gpt2-small.md

fi

if [[ $PARTS == *optimize* ]]; then
# optimize: timed at (1, 128) / (1, 3, 224, 224), the sizes of the rows above
$M optimize demo:minilm --data benchmarks/data/sentences.txt -o $BUILD/minilm-opt --json \
    --report $OUT/minilm-optimize.md > $OUT/minilm-optimize.json

$M optimize benchmarks/models.py:bert_base --input input_ids:batch,seq:int64:0..30522 \
    --input attention_mask:batch,seq:int64:0..2 --dim batch=1..2 --dim seq=1..128 --shape batch=1 --shape seq=128 \
    -o $BUILD/bert-base-opt --json --report $OUT/bert-base-optimize.md > $OUT/bert-base-optimize.json

$M optimize benchmarks/models.py:resnet50 --input x:batch,3,s,s --dim batch=1..2 --dim s=64..224 \
    --shape batch=1 --shape s=224 -o $BUILD/resnet50-opt --json --report $OUT/resnet50-optimize.md > $OUT/resnet50-optimize.json

$M optimize benchmarks/models.py:gpt2_small --input input_ids:batch,seq:int64:0..50257 \
    --input attention_mask:batch,seq:int64:0..2 --dim batch=1..2 --dim seq=1..128 --shape batch=1 --shape seq=128 \
    -o $BUILD/gpt2-small-opt --json --report $OUT/gpt2-small-optimize.md > $OUT/gpt2-small-optimize.json

# what OpenVINO's static shapes and activation group sizes do to MiniLM's int8-weights model
.venv/bin/python benchmarks/openvino_knobs.py --out $OUT

fi

if [[ $PARTS == *serve* ]]; then
# serve: modelport serve (batching on/off) against Triton, MLServer and KServe, each in its own venv
for peer in triton mlserver kserve; do benchmarks/serve/peers/setup.sh $peer > /dev/null; done
.venv/bin/python benchmarks/serve/run.py --out $OUT
.venv/bin/python benchmarks/serve/rows.py --out $OUT  # what a row costs by batch size: a cap for --max-batch-size
fi

if [[ $PARTS == *scale* ]]; then
# scale: batch (hand loop, local, Ray Data 1/2 actors) and serving engines (Ray Serve, a real Triton)
.venv/bin/python benchmarks/scale/run.py --out $OUT
fi

if [[ $PARTS == *generate* ]]; then
# generate: TTFT and decode tokens/s, GPT-2 small and a ~0.5 B LLaMA-style model, against transformers eager,
# torch.compile, optimum-onnx and onnxruntime-genai (each peer in its own venv), with the bandwidth roofline
for peer in optimum genai; do benchmarks/generate/peers/setup.sh $peer > /dev/null || true; done
.venv/bin/python benchmarks/generate/run.py --out $OUT
# optimize on generation bundles: quality on a model trained here on the standard library (~20 min the
# first time), speed of every int8/int4 candidate on the 0.5 B model
.venv/bin/python benchmarks/generate/optimize.py --out $OUT
# a 1.1 B model (4.4 GB) export -> verify -> optimize int4 -> generate: wall time and peak RSS per step
.venv/bin/python benchmarks/generate/big.py --out $OUT
# compressed against the peers at their own int4/int8: quality on the trained model, speed on the 1.1 B one
for peer in llamacpp ct2 ovgenai genai vllm; do benchmarks/generate/peers/setup.sh $peer > /dev/null || true; done
.venv/bin/python benchmarks/generate/compressed.py --models tinyllama-1.1b --rounds 2 --candidate int4-sym-128 --out $OUT
# serving generation at 1, 4 and 16 streams against Triton, llama.cpp's server and vLLM; the 2-minute load test
make triton-env > /dev/null || true
.venv/bin/python benchmarks/serve_generate/run.py --out $OUT/serve-generate.json
.venv/bin/python benchmarks/serve_generate/soak.py --out $OUT/serve-generate-soak.json
fi

.venv/bin/python benchmarks/summarize.py $OUT > $OUT/SUMMARY.md
