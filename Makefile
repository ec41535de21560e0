# The two commands of the README: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The versions the suite was last run with (pip constraints); `make lock` refreshes them (README: Versions).
LOCK := constraints.txt

.PHONY: demo test lint bench lock clean

$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(LOCK) -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py --out runs/demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -m "not slow" -q --durations=15 -n auto --maxprocesses=4 --dist loadscope

bench: $(STAMP)
	$(PY) scripts/bench_scan.py

lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install -q --upgrade pip
	.venv-lock/bin/python -m pip install -q -e '.[dev]'
	{ echo "# pip constraints for make test / make demo: the versions the suite was last run with."; \
	  echo "# Made by make lock on $$(date -u +%F), $$(.venv-lock/bin/python -V), $$(uname -m)."; \
	  .venv-lock/bin/python -m pip freeze --exclude-editable; } > $(LOCK)
	rm -rf .venv-lock
	@echo "wrote $(LOCK): now run 'rm -rf .venv && make test' and commit it if the suite passes"

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .hypothesis
