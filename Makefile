# make venv | make test | make demo  -- each bootstraps .venv from nothing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# cpu (CI, this machine) or gpu: `make venv PADDLE=gpu` (see README "GPU install").
PADDLE ?= cpu
EXTRAS := $(PADDLE),rjieba,test,bench
STAMP  := $(VENV)/.installed-$(PADDLE)
CSRC   := $(wildcard data_tools/csrc/*.cpp data_tools/csrc/*.h)
export OMP_NUM_THREADS ?= 2

.PHONY: venv test demo clean

venv: $(STAMP)

$(STAMP): setup.py pyproject.toml $(CSRC)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel pybind11
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	@touch $(STAMP)

test: venv
	$(PY) -m pytest -q tests

demo: venv
	$(PY) -m ernie_style.demo

# The install stamps go too: without the .so files the package must be rebuilt.
clean:
	rm -rf build *.egg-info data_tools/*.so demo_output $(VENV)/.installed-*
