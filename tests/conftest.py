"""Every vLLM engine a test starts (in this process or a child) runs Model Runner V2, the
runner of every GPU user (vLLM 0.34 has no other). On this CPU build V2 needs a Triton
backend named "cpu": tests/cpu_test_env, which `make` installs, runs Triton's kernels in
its interpreter, offered only to processes that ask (this file asks for the tests and their
children; `make demo` and servers users start from .venv run as a user's install does). A
test that checks the V1 runner, or a user's setup, asks for it itself."""

import os

try:
    import triton_cpu_interpreter
except ImportError:  # the test environment is not installed: engines run V1 (the report header says so)
    pass
else:
    triton_cpu_interpreter.offer()
os.environ.setdefault("VLLM_USE_V2_MODEL_RUNNER", "1")


import numpy as np
import pytest
import reference


def pytest_collection_finish(session):
    """Modules whose tests wait on long subprocesses that need nothing from the tests before
    them define `start_in_background()`: it runs now, if any of their tests was selected, and
    their fixture takes what it started (utils.started_early) instead of starting it then."""
    import utils

    modules = {item.module for item in session.items if hasattr(item, "module")}
    for module in sorted(modules, key=lambda m: m.__name__):
        start = getattr(module, "start_in_background", None)
        if start is not None and not session.config.option.collectonly:
            utils.STARTED_EARLY[module.__name__] = start()


def pytest_sessionfinish(session):
    """Stops what was started early for a module whose tests never asked for it."""
    import utils

    for started in utils.STARTED_EARLY.values():
        for process in started.values():
            process.stop()
    utils.STARTED_EARLY.clear()


@pytest.fixture(scope="session")
def random_tokens():
    """Random (n_samples, n_features) data with more features than samples (dense path)."""
    return np.random.default_rng(1).standard_normal((40, 60))


@pytest.fixture(scope="session")
def union_tokens():
    """A union of 4 subspaces of dimension 3 in R^12 (fewer features than samples: low rank)."""
    X, truth = reference.union_of_subspaces(
        n_subspaces=4, dim=3, ambient=12, points=12, noise=0.01, seed=3
    )
    return X, truth


def pytest_report_header(config):
    """The CI log says which runner the engine tests ran (vLLM logs "Using V2 Model Runner"
    in each engine process; engine tests also assert it from the engine's config)."""
    try:
        from triton.backends import backends

        backend = "registered" if "cpu" in backends else "missing (vLLM falls back to V1)"
    except ImportError:
        backend = "missing: triton is not installed"
    runner = "V2" if os.environ["VLLM_USE_V2_MODEL_RUNNER"] == "1" else "V1"
    return f"vLLM engines: Model Runner {runner}; Triton 'cpu' interpreter backend: {backend}"
