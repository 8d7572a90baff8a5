# The two commands of the README's quick start are `make run` and `make test`;
# both install what they need first. `make check` is the pre-commit gate.
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: bootstrap run test check fmt format-check lint types bench screenshots

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
	@EXTRA_APT="tmux" bash scripts/bootstrap.sh
	$(BIN)/python bench/run_all.py

# SVG and PNG of the console's screens for the README (needs rsvg-convert and Fira Code).
screenshots: bootstrap
	@EXTRA_APT="librsvg2-bin fonts-firacode" bash scripts/bootstrap.sh
	$(BIN)/python scripts/screenshots.py
