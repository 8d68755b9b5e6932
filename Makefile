# Two commands for a newcomer: `make run` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup run test bench evaluate clean screenshots

setup: $(STAMP)

# Re-installs only when pyproject.toml changes, so a second `make setup` takes seconds.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: setup
	$(BIN)/stylize run configs/samples.yaml

test: setup
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile

clean:
	rm -rf out .pytest_cache

bench: setup
	$(BIN)/python -m pip install --quiet 'scikit-video>=1.1'
	$(BIN)/python bench/run.py

# The evaluation set (bench/evaluate.py): photos x paintings at the defaults, then a strength sweep;
# the judge's distances and contact sheets land in out/evaluate/.
evaluate: setup
	$(BIN)/python -m pip install --quiet 'scikit-video>=1.1' 'scikit-image>=0.22'
	$(BIN)/python bench/evaluate.py --size 128 --name defaults
	$(BIN)/python bench/evaluate.py --size 128 --name strength --photos astronaut,motorcycle --paintings starry_night,great_wave --sweep strength=0.25,0.5,0.75,1

# The README's pictures of the studio and report.html, taken by the browser tests.
screenshots: setup
	SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -q -m browser
