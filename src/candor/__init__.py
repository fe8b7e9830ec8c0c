"""Candor: classifiers whose confidence can be trusted, trained and served.

Subpackages: ``candor.calibration`` (numpy math and the manifest),
``candor.trainer`` (torch), ``candor.server`` and ``candor.client``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("candor")  # pyproject.toml holds the one copy of the number
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
