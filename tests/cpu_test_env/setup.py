"""Puts videoanchor_cpu_compat.pth at the top of the wheel (so at the top of site-packages,
where Python's site module runs it at every start). Everything else is in pyproject.toml."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "videoanchor_cpu_compat.pth"


class BuildWithPth(build_py):
    def run(self):
        super().run()
        self.copy_file(str(Path(__file__).with_name(PTH)), str(Path(self.build_lib, PTH)), preserve_mode=False)

    def get_outputs(self, include_bytecode=True):
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib, PTH))]


setup(cmdclass={"build_py": BuildWithPth})
