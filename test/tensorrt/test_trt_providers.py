"""ONNX Runtime execution-provider selection (TensorRT EP > CUDA EP > CPU)."""

from __future__ import annotations

import numpy as np
import pytest
from _trt_graphs import conv_chain
from edge_perception.backends.providers import (
    CPU_EP,
    CUDA_EP,
    TENSORRT_EP,
    ProviderError,
    describe,
    device_of,
    select,
)

ALL = [TENSORRT_EP, CUDA_EP, CPU_EP]


def test_auto_prefers_tensorrt_then_cuda_then_cpu():
    chosen = select("auto", available=ALL, cache_dir="/models/trt")
    assert [n for n, _ in chosen] == ALL
    trt = chosen[0][1]
    assert trt["trt_fp16_enable"] == "True" and trt["trt_int8_enable"] == "False"
    assert trt["trt_engine_cache_enable"] == "True"
    assert trt["trt_engine_cache_path"] == "/models/trt"
    assert trt["trt_max_workspace_size"] == str(1024 << 20)
    assert chosen[1][1]["cudnn_conv_algo_search"] == "HEURISTIC"
    assert describe(chosen) == (
        "TensorrtExecutionProvider(fp16) > CUDAExecutionProvider > CPUExecutionProvider"
    )
    assert device_of(chosen) == "cuda"


def test_auto_on_a_cpu_only_build_is_cpu():
    assert select("auto", available=[CPU_EP]) == [(CPU_EP, {})]
    assert device_of(select("auto", available=[CPU_EP])) == "cpu"


def test_int8_and_dla_options():
    (name, opts), *_ = select("tensorrt", available=ALL, precision="int8", dla_core=1)
    assert name == TENSORRT_EP
    assert opts["trt_int8_enable"] == "True" and opts["trt_fp16_enable"] == "True"
    assert opts["trt_dla_enable"] == "True" and opts["trt_dla_core"] == "1"
    assert "trt_engine_cache_path" not in opts
    assert describe([(name, opts)]) == "TensorrtExecutionProvider(int8,dla1)"
    fp32 = select("tensorrt", available=ALL, precision="fp32", dla_core=-1)[0][1]
    assert fp32["trt_fp16_enable"] == "False" and "trt_dla_enable" not in fp32


def test_explicit_request_for_a_missing_provider_names_the_fix():
    with pytest.raises(ProviderError, match="onnxruntime-gpu"):
        select("cuda", available=[CPU_EP])
    assert select("cuda", available=[CPU_EP], strict=False) == [(CPU_EP, {})]
    assert [n for n, _ in select(["cuda", "cpu"], available=ALL)] == [CUDA_EP, CPU_EP]


@pytest.mark.parametrize("bad", ["gpu", ["tensorrt", "npu"]])
def test_unknown_provider_names(bad):
    with pytest.raises(ProviderError, match="unknown execution provider"):
        select(bad, available=ALL)


def test_bad_precision():
    with pytest.raises(ProviderError, match="precision"):
        select("auto", available=ALL, precision="bf16")


def test_selection_runs_a_real_session(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    path = conv_chain(tmp_path / "m.onnx", ["/a/Conv"])
    providers = select("auto")  # whatever this onnxruntime has; CPU here
    assert providers[-1][0] == CPU_EP
    sess = ort.InferenceSession(str(path), providers=providers)
    out = sess.run(None, {"images": np.ones((1, 3, 16, 16), np.float32)})[0]
    assert out.shape == (1, 3, 16, 16) and np.isfinite(out).all()
    assert sess.get_providers()[0] == providers[0][0]
