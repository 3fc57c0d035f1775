"""The driver: always active, targets the CPU, hands Triton CPU torch tensors."""

import os
import time

from triton.backends.compiler import GPUTarget
from triton.backends.driver import DriverBase

# kernels of this backend can only be interpreted; a process that asked for compiled
# kernels explicitly (TRITON_INTERPRET=0) keeps its choice and gets the compiler's error
os.environ.setdefault("TRITON_INTERPRET", "1")


class InterpreterCPUDriver(DriverBase):

    @classmethod
    def is_active(cls):
        return True

    def map_python_to_cpp_type(self, ty: str) -> str:
        raise NotImplementedError("the interpreter backend generates no C++ launchers")

    def get_current_target(self):
        return GPUTarget("cpu", "interpreter", 1)

    def get_active_torch_device(self):
        import torch

        return torch.device("cpu")

    def get_current_device(self):
        return 0

    def set_current_device(self, device):
        pass

    def get_current_stream(self, device=None):
        return 0

    def get_device_interface(self):
        import torch

        return torch.cpu

    def get_benchmarker(self):
        def bench(kernel_call, *, quantiles=None, **kwargs):
            start = time.perf_counter()
            kernel_call()
            elapsed_ms = (time.perf_counter() - start) * 1e3
            return [elapsed_ms] * len(quantiles) if quantiles else elapsed_ms

        return bench
