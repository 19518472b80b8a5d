# Set-up and entry points. `make demo` and `make test` create .venv on first use.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Back XLA:CPU's large temporaries with huge pages (see README, Performance).
export GLIBC_TUNABLES ?= glibc.malloc.hugetlb=1

.PHONY: demo test bench clean-venv

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[export,test,tts]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m kws_jax.wakeword

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=25 tests

bench: $(STAMP)
	$(BIN)/python benchmarks/model_speed.py
	$(BIN)/python benchmarks/frontend_speed.py
	$(BIN)/python benchmarks/data_speed.py
	$(BIN)/python benchmarks/train_speed.py
	$(BIN)/python benchmarks/export_speed.py
	$(BIN)/python benchmarks/stream_eval_speed.py
	$(BIN)/python benchmarks/acoustics_speed.py

clean-venv:
	rm -rf $(VENV)
