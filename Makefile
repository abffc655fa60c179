# Everything set-up needs, from nothing: `make demo` runs the main job, `make test` the tests.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# exactly this spelling: it takes the local CPU build; anything else downloads CUDA wheels
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[hf,openvino,bench,serve,ray,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/modelport demo -o build/minilm

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	benchmarks/run.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests

clean:
	rm -rf build .pytest_cache
