"""Build script: the package layout (``kernels/`` -> ``mate.kernels``, ``segment/`` ->
``mate.segment``) and the C++ extension ``mate.segment._partition``. Metadata lives in
pyproject.toml."""
import sys

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import find_packages, setup

# `mate` and its subpackages come from mate/; two subpackages live beside it (the design card's
# layout) and are mapped into the namespace so they never install as top-level `kernels`/`segment`.
packages = find_packages(include=["mate", "mate.*"])
packages += ["mate.kernels"] + [f"mate.kernels.{p}" for p in find_packages("kernels")]
packages += ["mate.segment"] + [f"mate.segment.{p}" for p in find_packages("segment")]

extra_compile_args = ["-O3"] if sys.platform != "win32" else ["/O2"]

setup(
    packages=packages,
    package_dir={"mate": "mate", "mate.kernels": "kernels", "mate.segment": "segment"},
    ext_modules=[
        Pybind11Extension(
            "mate.segment._partition",
            ["csrc/partition.cpp"],
            cxx_std=17,
            extra_compile_args=extra_compile_args,
        )
    ],
    cmdclass={"build_ext": build_ext},
)
