"""The compiler: there is none. Reaching it means a kernel was launched without
TRITON_INTERPRET=1, which this backend cannot serve: say so instead of failing in MLIR."""

import hashlib

from triton.backends.compiler import BaseBackend


class InterpreterCPUBackend(BaseBackend):

    @staticmethod
    def supports_target(target):
        return target.backend == "cpu"

    def hash(self) -> str:
        return hashlib.sha256(b"triton-cpu-interpreter").hexdigest()

    def parse_options(self, options: dict) -> object:
        raise RuntimeError("the 'cpu' Triton backend of the test environment only interprets kernels: "
                           "set TRITON_INTERPRET=1 before triton is imported")

    def add_stages(self, stages, options, language) -> None:
        self.parse_options({})

    def load_dialects(self, context):
        pass

    def get_module_map(self):
        return {}
