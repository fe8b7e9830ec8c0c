"""Candor: classifiers whose confidence can be trusted, trained and served.

Subpackages: ``candor.calibration`` (numpy math and the manifest),
``candor.trainer`` (torch), ``candor.server`` and ``candor.client``.
"""

__version__ = "0.1.0"
