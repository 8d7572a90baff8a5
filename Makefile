# The two commands of the README's quick start are `make run` and `make test`;
# both install what they need first. `make check` is the pre-commit gate.
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: bootstrap run test check fmt format-check lint types bench

bootstrap:
	@bash scripts/bootstrap.sh

run: bootstrap
	$(BIN)/dtp-console $(ARGS)

test: bootstrap
	$(BIN)/python -m pytest $(ARGS)

format-check: bootstrap
	$(BIN)/ruff format --check .

fmt: bootstrap
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lint: bootstrap
	$(BIN)/ruff check .

types: bootstrap
	$(BIN)/mypy

check: format-check lint types test

bench: bootstrap
	$(BIN)/python bench/run_all.py
