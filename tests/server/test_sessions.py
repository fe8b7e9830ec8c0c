"""Provider choice. No GPU here: the CUDA branch is exercised by naming the
available providers, and the fallback by asking this CPU-only onnxruntime for CUDA."""

import pytest

from candor.server.core.sessions import CPU, CUDA, choose_providers, create_session


def test_auto_prefers_cuda_when_onnxruntime_gpu_offers_it():
    assert choose_providers("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers("auto", [CPU]) == [CPU]
    assert choose_providers("cpu", [CUDA, CPU]) == [CPU]
    assert choose_providers("cuda", [CUDA, CPU]) == [CUDA, CPU]


def test_cuda_without_onnxruntime_gpu_says_what_to_install():
    hint = r"onnxruntime-gpu in place of onnxruntime \(pip uninstall onnxruntime; pip install 'candor\[server,gpu\]'\)"
    with pytest.raises(ValueError, match=hint):
        choose_providers("cuda", [CPU])
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        choose_providers("tpu", [CPU])


def test_a_session_reports_the_provider_it_really_runs_on(digits_repo):
    # This onnxruntime has no CUDA: asked for CUDA first, it runs on the CPU and says so.
    session, provider = create_session(str(digits_repo / "digits/1/model.onnx"), [CUDA, CPU])
    assert provider == CPU and session.get_providers() == [CPU]
