"""onnxruntime sessions and the choice of execution provider."""

from __future__ import annotations

import logging

import onnxruntime as ort

log = logging.getLogger("candor.server")
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def choose_providers(setting: str, available: list[str] | None = None) -> list[str]:
    """Providers to ask onnxruntime for, best first.

    ``auto`` takes CUDA when onnxruntime-gpu is installed (CUDA in its
    available providers), else CPU; ``cuda`` insists on it and says how to
    get it; ``cpu`` never touches a GPU.
    """
    available = ort.get_available_providers() if available is None else available
    if setting == "cpu":
        return [CPU]
    if setting == "cuda":
        if CUDA not in available:
            raise ValueError(
                "provider 'cuda' needs onnxruntime-gpu in place of onnxruntime (pip uninstall onnxruntime; "
                f"pip install 'candor[server,gpu]'); this onnxruntime offers {available}"
            )
        return [CUDA, CPU]
    if setting != "auto":
        raise ValueError(f"provider must be auto, cpu or cuda, got {setting!r}")
    return [CUDA, CPU] if CUDA in available else [CPU]


def create_session(
    path: str, providers: list[str], intra_op_threads: int = 1, allow_spinning: bool = False
) -> tuple[ort.InferenceSession, str]:
    """A session and the provider it really runs on: with CUDA listed but no
    usable GPU, onnxruntime falls back to CPU, and the report says so.

    Spinning intra-op threads busy-wait between runs; on a small machine they
    take the cores the event loop and gRPC need (measured in docs/benchmarks.md),
    so spinning is off unless asked for.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    session = ort.InferenceSession(path, sess_options=options, providers=providers)
    in_use = session.get_providers()[0]
    if in_use != providers[0]:
        log.warning("asked for %s but onnxruntime runs %s on %s", providers[0], path, in_use)
    return session, in_use
