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

.PHONY: install demo chromium test test-fast fuzz reliability lint bench-prepare bench-check clean docker-lint docker-test

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

# Everything but the tests marked slow (processes, torchrun, real servers, the C++ build),
# browser (headless Chromium) or docker (pyproject.toml declares the markers).
test-fast: install
	$(BIN)/python -m pytest -m "not slow and not browser and not docker" tests

# Schema fuzzing of the HTTP API (schemathesis, in-process): many more cases than the test suite.
fuzz: install
	FUZZ_EXAMPLES=1000 $(BIN)/python -m pytest -q -s tests/server/test_requests.py -k fuzz

# Try to break it (README "Reliability"): schema fuzzing and hostile requests, corpus and
# checkpoint faults, unpickling refused; then 64 streaming clients (a third disconnecting)
# against the bundled model, and 20 SIGKILLs during training. Exits non-zero on any failure.
RELIABILITY_TESTS := \
	tests/server/test_requests.py::test_invalid_values_get_422_naming_field_and_value \
	tests/server/test_guard.py::test_lone_surrogate_and_empty_after_normalisation_get_422 \
	tests/server/test_guard.py::test_hostile_bodies_get_a_clear_4xx_and_the_server_keeps_serving \
	tests/server/test_guard.py::test_oversized_body_gets_413_declared_or_chunked \
	tests/server/test_app.py::test_full_queue_gets_429_and_a_dropped_stream_frees_its_slot \
	tests/server/test_app.py::test_cors_off_by_default_and_configurable \
	tests/server/test_app.py::test_no_request_field_names_a_file_and_the_default_bind_is_loopback \
	tests/data/test_prepare.py::test_bad_corpus_files \
	tests/data/test_prepare.py::test_folder_without_text \
	tests/model/test_checkpoint.py::test_full_disk_during_save_keeps_the_previous_checkpoint \
	tests/model/test_checkpoint.py::test_truncated_checkpoint_is_refused \
	tests/model/test_checkpoint.py::test_pickled_objects_are_refused \
	tests/train/test_snapshot.py::test_kill_9_and_resume_equals_uninterrupted \
	tests/train/test_runtime.py::test_sigterm_finishes_the_step_saves_and_exits_0

reliability: fuzz
	$(BIN)/python -m pytest -q $(RELIABILITY_TESTS)
	$(BIN)/python scripts/reliability.py all

# ruff's rules and formatter, and mypy on the package ([tool.mypy] in pyproject.toml).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench-prepare: install
	$(BIN)/python benchmarks/prepare.py

# Training speed of this tree against AGAINST (a commit), A B A B in one run; fails on a drop
# beyond the runs' own spread. Not in CI: too noisy on a shared 2-core machine. Run it alone.
AGAINST ?= HEAD~1
bench-check: install
	test -d data/prepared/pd1998 || $(BIN)/textgen prepare --out data/prepared/pd1998
	$(BIN)/python benchmarks/bench_check.py --against $(AGAINST)

docker-lint: install
	$(BIN)/hadolint Dockerfile

# Build and run the image with podman (as root; no Docker engine needed), check /health and a
# generation, then clean up. CHECKPOINT=path bundles another model; KEEP_IMAGE=1 keeps the image.
docker-test: docker-lint
	bash scripts/docker-test.sh

clean:
	rm -rf $(VENV) data/prepared .pytest_cache .ruff_cache
