"""TensorRT backend and builder end to end. Runs for real where TensorRT + a CUDA GPU exist
(a Jetson, a desktop GPU); elsewhere only the "TensorRT missing" behaviour is checked."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _trt_graphs import conv_chain
from edge_perception.backends.base import BackendError
from edge_perception.tensorrt import tensorrt_available
from edge_perception.tensorrt.cache import EngineCacheError, read_sidecar

HAVE_TRT = tensorrt_available()
needs_trt = pytest.mark.skipif(not HAVE_TRT, reason="needs TensorRT and a CUDA GPU")


@pytest.mark.skipif(HAVE_TRT, reason="checks the error shown where TensorRT is absent")
def test_backend_without_tensorrt_names_the_fix(tmp_path):
    from edge_perception.backends.tensorrt_backend import TensorRTBackend

    model = conv_chain(tmp_path / "m.onnx", ["/a/Conv"])
    with pytest.raises(BackendError, match="pip install tensorrt"):
        TensorRTBackend(str(model))


def test_backend_rejects_unknown_options_on_any_machine(tmp_path):
    from edge_perception.backends.tensorrt_backend import TensorRTBackend

    model = conv_chain(tmp_path / "m.onnx", ["/a/Conv"])
    with pytest.raises(BackendError, match="unknown TensorRT build option 'intra_op_threads'"):
        TensorRTBackend(str(model), intra_op_threads=2)
    with pytest.raises(BackendError, match="unknown precision policy"):
        TensorRTBackend(str(model), precision="int8", policy="yolo")


def reference(model_path, x):
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"images": x})[0]


@pytest.fixture
def images(tmp_path):
    import cv2

    folder = tmp_path / "calib" / "train" / "images" / "seq00"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(16):
        cv2.imwrite(str(folder / ("%06d.jpg" % i)), rng.integers(0, 255, (16, 16, 3), np.uint8))
    return str(tmp_path / "calib")


@pytest.mark.gpu
@needs_trt
def test_fp32_engine_matches_onnxruntime_and_is_cached(tmp_path):
    from edge_perception.backends.tensorrt_backend import TensorRTBackend

    model = conv_chain(tmp_path / "m.onnx", ["/backbone/Conv", "/head/Conv"], ("N", 3, 16, 16))
    shapes = {"images": ((1, 3, 16, 16), (2, 3, 16, 16), (4, 3, 16, 16))}
    be = TensorRTBackend(str(model), precision="fp32", shapes=shapes)
    try:
        assert be.input_names == ["images"] and be.output_names == ["logits"]
        assert be.info.extra["engine_source"] == "built" and be.info.kind == "tensorrt"
        for n in (1, 3):
            x = np.random.default_rng(n).random((n, 3, 16, 16), dtype=np.float32)
            out = be({"images": x})["logits"]
            np.testing.assert_allclose(out, reference(model, x), rtol=1e-3, atol=1e-3)
        with pytest.raises(BackendError, match="outside the engine's profile"):
            be({"images": np.zeros((8, 3, 16, 16), np.float32)})
    finally:
        be.close()
        be.close()
    again = TensorRTBackend(str(model), precision="fp32", shapes=shapes)
    assert again.info.extra["engine_source"] == "cached"
    engine = again.info.model_path
    again.close()
    side = read_sidecar(engine)
    assert side["onnx_io"]["outputs"]["logits"]["dtype"] == "float32"
    # a ready .engine loads directly (checked against this TensorRT and GPU via its sidecar)
    direct = TensorRTBackend(engine)
    x = np.ones((1, 3, 16, 16), np.float32)
    np.testing.assert_allclose(direct({"images": x})["logits"], reference(model, x), atol=1e-3)
    direct.close()
    # the model changes and building is disabled: a clear configure-time error
    conv_chain(tmp_path / "m.onnx", ["/backbone/Conv", "/x/Conv"], ("N", 3, 16, 16))
    with pytest.raises(EngineCacheError, match="onnx_sha256"):
        TensorRTBackend(str(model), precision="fp32", shapes=shapes, build_if_missing=False)


@pytest.mark.gpu
@needs_trt
def test_int8_calibration_policy_and_qdq(tmp_path, images):
    from edge_perception.tensorrt.builder import BuildOptions, build_engine
    from edge_perception.tensorrt.policy import PRESETS

    model = conv_chain(tmp_path / "lane.onnx", ["/backbone/Conv", "/head/Conv"])
    opts = BuildOptions("int8", policy=PRESETS["lane"], calib_data=images, calib_batch=4)
    report = build_engine(str(model), str(tmp_path / "lane.int8.engine"), opts)
    # static batch 1: the calibration batch follows the model, 16 images = 16 batches
    assert report.int8_mode == "calibration" and report.calibration_batches == 16
    assert report.layer_precisions.get("fp16") == 1
    assert (tmp_path / "lane.int8.engine.calib").stat().st_size > 0
    assert json.loads((tmp_path / "lane.int8.engine.json").read_text())["key"]["calibration"]
    qdq = conv_chain(tmp_path / "q.onnx", ["/a/Conv"], qdq=True)
    report = build_engine(str(qdq), str(tmp_path / "q.int8.engine"), BuildOptions("int8"))
    assert report.int8_mode == "qdq" and report.calibration_batches == 0


@pytest.mark.gpu
@needs_trt
def test_torch_cuda_tensors_are_bound_without_copy(tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    from edge_perception.backends.tensorrt_backend import TensorRTBackend

    model = conv_chain(tmp_path / "m.onnx", ["/a/Conv"])
    be = TensorRTBackend(str(model), precision="fp32")
    x = torch.rand(1, 3, 16, 16, device="cuda")
    out = be({"images": x})["logits"]
    np.testing.assert_allclose(out, reference(model, x.cpu().numpy()), atol=1e-3)
    with pytest.raises(BackendError, match="contiguous float32"):
        be({"images": x.half()})
    be.close()


@pytest.mark.gpu
@needs_trt
def test_build_only_then_the_backend_finds_the_engine_cached(tmp_path):
    from edge_perception.backends.tensorrt_backend import TensorRTBackend
    from edge_perception.tensorrt.builder import build_only

    model = conv_chain(tmp_path / "m.onnx", ["/a/Conv"])
    path, key, how = build_only(str(model), cache_dir=str(tmp_path / "engines"), precision="fp16")
    assert how == "built" and path == str(tmp_path / "engines" / "m.fp16.engine")
    assert build_only(str(model), cache_dir=str(tmp_path / "engines"), precision="fp16")[2] == (
        "cached"
    )
    be = TensorRTBackend(
        str(model), precision="fp16", cache_dir=str(tmp_path / "engines"), build_if_missing=False
    )
    assert be.info.extra["engine_source"] == "cached"
    assert be.info.extra["engine_key"] == key.digest()[:16]
    be.close()
