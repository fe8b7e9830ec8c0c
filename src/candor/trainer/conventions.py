"""Names the CLI needs before torch is imported (so `candor serve` never loads torch)."""

MULTICLASS_CONVENTIONS = ("uniform", "off_target", "prior", "hierarchy", "teacher")
DEFAULT_OPSET = 17
