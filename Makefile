# textgen: the two set-up commands are `make demo` (the main job) and `make test`.
#
# Torch is installed before the project so that pip keeps it: by default the CPU build
# `torch==2.13.0` (on the team's machines it installs from local disk in seconds). Bring your
# own torch instead with e.g. `make TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"`
# or by installing it into .venv first; the project itself only asks for torch>=2.10.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.textgen-installed

.PHONY: install demo chromium test fuzz reliability lint bench-prepare clean docker-lint docker-test

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/textgen serve

# The playground test drives Debian's chromium (no browser download); CI runs as root.
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

# The whole check, as CI runs it (.ci/run): lint, then every test.
test: install chromium lint
	$(BIN)/python -m pytest tests

# Schema fuzzing of the HTTP API (schemathesis, in-process): many more cases than the test suite.
fuzz: install
	FUZZ_EXAMPLES=1000 $(BIN)/python -m pytest -q -s tests/server/test_requests.py -k fuzz

# Try to break it (README "Reliability"): schema fuzzing and hostile requests, corpus and
# checkpoint faults, unpickling refused; then 64 streaming clients (a third disconnecting)
# against the bundled model, and 20 SIGKILLs during training. Exits non-zero on any failure.
reliability: fuzz
	$(BIN)/python -m pytest -q tests/server tests/test_faults.py tests/test_train.py \
		-k "hostile or invalid or oversized or surrogate or 429 or cors or no_request_field or bad_corpus or folder or disk or truncated or pickled or kill or sigterm"
	$(BIN)/python scripts/reliability.py all

# ruff's rules and formatter, and mypy on the package ([tool.mypy] in pyproject.toml).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench-prepare: install
	$(BIN)/python benchmarks/prepare.py

docker-lint: install
	$(BIN)/hadolint Dockerfile

# Build and run the image with podman (as root; no Docker engine needed), check /health and a
# generation, then clean up. CHECKPOINT=path bundles another model; KEEP_IMAGE=1 keeps the image.
docker-test: docker-lint
	bash scripts/docker-test.sh

clean:
	rm -rf $(VENV) data/prepared .pytest_cache .ruff_cache
