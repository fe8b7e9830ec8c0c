"""The generated stubs and the SDK (Client / AsyncClient): built in the serving issue.

Never imports onnxruntime or torch.
"""
