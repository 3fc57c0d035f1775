"""Puts the .pth files at the top of the wheel (so at the top of site-packages, where
Python's site module runs them at every start): videoanchor_cpu_compat.pth (the torchvision
workaround, which the CPU image also copies) and videoanchor_test_env.pth (the TRITON_ATTN
switch, and the interpreter backend offered only where asked). Everything else is in
pyproject.toml."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTHS = ("videoanchor_cpu_compat.pth", "videoanchor_test_env.pth")


class BuildWithPth(build_py):
    def run(self):
        super().run()
        for pth in PTHS:
            self.copy_file(str(Path(__file__).with_name(pth)), str(Path(self.build_lib, pth)), preserve_mode=False)

    def get_outputs(self, include_bytecode=True):
        return [*super().get_outputs(include_bytecode), *(str(Path(self.build_lib, pth)) for pth in PTHS)]


setup(cmdclass={"build_py": BuildWithPth})
