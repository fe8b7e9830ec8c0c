"""Names the CLI needs before torch is imported (so `candor serve` never loads torch)."""

MULTICLASS_CONVENTIONS = ("uniform", "off_target", "prior", "hierarchy", "teacher")
DEFAULT_OPSET = 17
# The newest opset torch's TorchScript exporter writes (torch.onnx._constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
# in torch 2.13; a test keeps the two equal): `--opset` is checked against both ends before any training.
MAX_OPSET = 20
DEFAULT_EPSILON = 0.1  # uniform label smoothing 0.1: a safe start (0.05-0.1), as torch's label_smoothing examples use
