"""CUDA binding selection: clear errors where no binding / GPU exists; the real bindings run in
the GPU tests."""

from __future__ import annotations

import pytest
from edge_perception.tensorrt.cuda import (
    API_NAMES,
    CudaUnavailableError,
    available_apis,
    get_cuda_api,
)


def test_unknown_binding_name():
    with pytest.raises(CudaUnavailableError, match="unknown CUDA binding 'cupy'"):
        get_cuda_api("cupy")


def test_no_binding_lists_every_attempt_and_the_fix():
    if available_apis():
        pytest.skip("a CUDA binding with a device is present here")
    with pytest.raises(CudaUnavailableError) as exc:
        get_cuda_api()
    text = str(exc.value)
    for name in API_NAMES:
        assert name + ":" in text
    assert "pip install cuda-python" in text and "pycuda" in text


def test_a_named_binding_is_the_only_one_tried():
    if "pycuda" in available_apis():
        pytest.skip("pycuda is installed here")
    with pytest.raises(CudaUnavailableError) as exc:
        get_cuda_api("pycuda")
    assert "pycuda:" in str(exc.value) and "torch:" not in str(exc.value)
