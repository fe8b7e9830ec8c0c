"""The Candor client SDK and its generated stubs (``candor.v1``, ``candor.kserve.v2``).

Never imports onnxruntime or torch.

>>> from candor.client import Client
>>> with Client("127.0.0.1:8001") as client:        # doctest: +SKIP
...     client.predict(rows, model="digits").probabilities
"""

from candor.client.sdk import AsyncClient, CalibrationReport, Client, FeedbackResult, ModelDescription, PredictResult

__all__ = ["AsyncClient", "CalibrationReport", "Client", "FeedbackResult", "ModelDescription", "PredictResult"]
