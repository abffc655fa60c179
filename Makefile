# Everything set-up needs, from nothing: `make demo` runs the main job, `make test` the tests,
# `make test-gpu` the GPU tests on a machine with an NVIDIA GPU (a venv of its own: onnxruntime-gpu and
# onnxruntime install the same module, so they never share one).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# exactly this spelling: it takes the local CPU build; anything else downloads CUDA wheels
TORCH  := torch==2.13.0
GPU_VENV  := .venv-gpu
GPU_BIN   := $(GPU_VENV)/bin
GPU_STAMP := $(GPU_VENV)/.installed
EXTRAS    := hf,openvino,bench,serve,ray,dev

.PHONY: demo test test-gpu gpu-present triton-env tf-env lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(TORCH)
	$(BIN)/pip install -e '.[cpu,$(EXTRAS)]'
	touch $(STAMP)

# the GPU venv: onnxruntime-gpu (with pip's CUDA/cuDNN) instead of onnxruntime, and the pinned TensorRT
$(GPU_STAMP): pyproject.toml | gpu-present
	test -x $(GPU_BIN)/python || $(PYTHON) -m venv $(GPU_VENV)
	$(GPU_BIN)/pip install $(TORCH)
	$(GPU_BIN)/pip install -e '.[gpu,$(EXTRAS)]'
	touch $(GPU_STAMP)

demo: $(STAMP)
	$(BIN)/modelport demo -o build/minilm

test: $(STAMP)
	$(BIN)/python -m pytest -q

# MODELPORT_REQUIRE_GPU=1: a gpu test that would skip (no CUDA provider, no tensorrt) fails instead
test-gpu: gpu-present $(GPU_STAMP)
	MODELPORT_REQUIRE_GPU=1 $(GPU_BIN)/python -m pytest -q -m gpu

# one line and a non-zero exit, before anything is created, where there is no GPU to test on
NVIDIA_SMI ?= nvidia-smi
gpu-present:
	$(if $(shell $(NVIDIA_SMI) -L 2>/dev/null | grep '^GPU '),,$(error make test-gpu needs an NVIDIA GPU and there is none here (nvidia-smi is missing or lists no GPU); run it on a GPU machine))

# Triton 2.51 (the tritonserver in the nvidia-pytriton wheel) in an environment of its own (numpy < 2):
# `serve --engine triton` uses it, and the real-Triton tests run instead of skipping (.ci/run makes it)
triton-env: $(STAMP)
	benchmarks/serve/peers/setup.sh triton

# TensorFlow + tf2onnx in an environment of their own: tests/test_import.py exports a real Keras model
# with them and imports it (it skips without this; .ci/run makes it)
tf-env:
	test -x build/tf-env/bin/python || $(PYTHON) -m venv build/tf-env
	build/tf-env/bin/pip install -q -r tests/tools/tf-requirements.txt

bench: $(STAMP)
	benchmarks/run.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests

clean:
	rm -rf build .pytest_cache
