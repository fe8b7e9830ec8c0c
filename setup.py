"""The one compiled module; everything else about the package is in pyproject.toml.

The served prediction sets' kernel (candor.server.core.ranked_sets): one C pass per request instead of six to
eight numpy calls. Optional: where no C compiler is at hand the install goes on without it and the numpy path
serves the same sets (the server logs that it does). It reads arrays through the buffer protocol, so it needs
Python's headers but not numpy's. Declared here rather than in pyproject.toml, whose ext-modules table
setuptools still calls experimental (and warns about on every install).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "candor.server.core._ranked_sets",
            sources=["src/candor/server/core/_ranked_sets.c"],
            optional=True,
            extra_compile_args=["-O2", "-ffp-contract=off"],  # no fused multiply-add: scores round as numpy's do
        )
    ]
)
