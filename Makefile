# The two commands of the README: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py --out runs/demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -m "not slow" -q

bench: $(STAMP)
	$(PY) scripts/bench_scan.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .hypothesis
