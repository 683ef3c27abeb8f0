# make venv | make test | make demo  -- each bootstraps .venv from nothing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# cpu (CI, this machine) or gpu: `make venv PADDLE=gpu` (see README "GPU install").
PADDLE ?= cpu
EXTRAS := $(PADDLE),rjieba,test,bench
STAMP  := $(VENV)/.installed-$(PADDLE)
# A second interpreter with transformers 5.x (no Paddle, no PaddleNLP: paddlenlp 2.8.1 needs huggingface_hub<1,
# which transformers 5 does not allow): the tests load our exports in it as a transformers-5 user would.
HF5     := .venv-hf5
HF5_REQ := tests/requirements-transformers5.txt
HF5_STAMP := $(HF5)/.installed
CSRC   := $(wildcard data_tools/csrc/*.cpp data_tools/csrc/*.h)
export OMP_NUM_THREADS ?= 2

.PHONY: venv test demo clean

venv: $(STAMP) $(HF5_STAMP)

$(STAMP): setup.py pyproject.toml $(CSRC)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel pybind11
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	@touch $(STAMP)

$(HF5_STAMP): $(HF5_REQ)
	@test -x $(HF5)/bin/python || $(PYTHON) -m venv $(HF5)
	$(HF5)/bin/python -m pip install -q -r $(HF5_REQ)
	@touch $(HF5_STAMP)

# On 2 processes (pytest-xdist; CI has 2 cores): each test goes to the process that is free; tests/conftest.py
# collects the long ones first.
test: venv
	$(PY) -m pytest -q -n 2 --dist loadgroup tests

demo: venv
	$(PY) -m ernie_style.demo

# The install stamps go too: without the .so files the package must be rebuilt.
clean:
	rm -rf build *.egg-info data_tools/*.so demo_output $(VENV)/.installed-* $(HF5)/.installed
