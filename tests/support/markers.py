"""Markers shared by test modules (importable by name: tests/support is on pytest's path, and
`from conftest import ...` would find whichever conftest.py came first on sys.path)."""

import pytest
import torch

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
