"""Backends on tiny exported models: names/shapes from the model, options, clear load errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from edge_perception.backends import BackendError, create_backend, kind_for_path
from tiny_models import TinyLaneUNet, detector_onnx, lane_onnx


@pytest.fixture(scope="module")
def lane_model(tmp_path_factory):
    return lane_onnx(str(tmp_path_factory.mktemp("m") / "lane.onnx"))


def test_onnxruntime_reads_io_from_model(lane_model):
    b = create_backend("onnxruntime", lane_model, intra_op_threads=1, graph_optimization="basic")
    assert b.input_names == ["images"] and b.output_names == ["logits", "mask"]
    assert b.inputs[0].shape[1:] == (3, 32, 64) and b.inputs[0].dtype == "float32"
    assert b.outputs[1].dtype == "uint8" and b.outputs[0].shape[1:] == (4, 32, 64)
    assert b.info.kind == "onnxruntime" and b.info.device == "cpu"
    assert b.info.extra["intra_op_threads"] == "1"
    assert b.info.extra["providers"].endswith("CPUExecutionProvider")
    x = np.random.default_rng(0).random((1, 3, 32, 64), dtype=np.float32)
    out = b({"images": x})
    ref_logits, ref_mask = TinyLaneUNet()(torch.from_numpy(x))
    np.testing.assert_allclose(out["logits"], ref_logits.detach().numpy(), atol=1e-4)
    assert (out["mask"] == ref_mask.numpy()).mean() > 0.99
    b.warmup(1)
    b.close()
    b.close()
    with pytest.raises(BackendError, match="closed"):
        b.run({"images": x})


def test_wrong_feeds_are_clear_errors(lane_model):
    b = create_backend("auto", lane_model)
    with pytest.raises(BackendError, match="missing input"):
        b({"image": np.zeros((1, 3, 32, 64), np.float32)})
    with pytest.raises(BackendError, match="must be float32"):
        b({"images": np.zeros((1, 3, 32, 64), np.float64)})
    with pytest.raises(BackendError, match="run failed"):
        b({"images": np.zeros((1, 3, 16, 64), np.float32)})


def test_missing_and_corrupt_models_name_file_and_cause(tmp_path):
    missing = tmp_path / "nope.onnx"
    with pytest.raises(BackendError, match=r"nope\.onnx: file not found"):
        create_backend("onnxruntime", str(missing))
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(BackendError, match=r"corrupt\.onnx: cannot be loaded"):
        create_backend("onnxruntime", str(corrupt))
    with pytest.raises(BackendError, match=r"corrupt\.onnx.*neither TorchScript"):
        create_backend("pytorch", str(corrupt), task="lane")


def test_bad_options_and_kinds(lane_model):
    with pytest.raises(ValueError, match="allowed"):
        create_backend("openvino", lane_model)
    with pytest.raises(BackendError, match="graph_optimization"):
        create_backend("onnxruntime", lane_model, graph_optimization="max")
    with pytest.raises(BackendError, match="unknown option"):
        create_backend("onnxruntime", lane_model, thread=1)
    assert kind_for_path("a/b.engine") == "tensorrt" and kind_for_path("x.pt") == "pytorch"
    with pytest.raises(ValueError, match="extension"):
        kind_for_path("model.bin")


def test_tensorrt_kind_is_registered_and_lazy(lane_model):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(BackendError, match="tensorrt"):
            create_backend("tensorrt", lane_model.replace(".onnx", ".engine"))


def test_explicit_missing_provider_is_an_error_auto_falls_back(lane_model):
    import onnxruntime as ort

    b = create_backend("onnxruntime", lane_model, providers="auto")
    assert "CPUExecutionProvider" in b.info.extra["providers"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert b.info.device == "cpu"
        with pytest.raises(BackendError, match=r"lane\.onnx: CUDAExecutionProvider was requested"):
            create_backend("onnxruntime", lane_model, providers=["cuda"])
    cpu = create_backend("onnxruntime", lane_model, providers=["cpu"])
    assert cpu.info.extra["providers"] == "CPUExecutionProvider"


def test_pytorch_torchscript_and_checkpoint(tmp_path):
    model = TinyLaneUNet().eval()
    x = np.random.default_rng(1).random((1, 3, 32, 64), dtype=np.float32)
    ref = model(torch.from_numpy(x))[0].detach().numpy()

    ts = tmp_path / "lane.ts"
    torch.jit.trace(model, torch.from_numpy(x)).save(str(ts))
    b = create_backend("auto", str(ts), task="lane", input_shape=[1, 3, 32, 64])
    assert b.input_names == ["images"] and b.output_names == ["logits", "mask"]
    assert b.outputs[1].dtype == "uint8" and b.outputs[1].shape == (1, 32, 64)
    np.testing.assert_allclose(b({"images": x})["logits"], ref, atol=1e-5)

    ckpt = tmp_path / "lane.pt"
    torch.save(
        {
            "model_factory": "tiny_models:TinyLaneUNet",
            "model_kwargs": {"num_classes": 4},
            "state_dict": model.state_dict(),
        },
        str(ckpt),
    )
    b = create_backend("pytorch", str(ckpt))  # names from the model's attributes
    assert b.output_names == ["logits", "mask"] and b.inputs[0].shape == (-1, 3, -1, -1)
    np.testing.assert_allclose(b({"images": x})["logits"], ref, atol=1e-5)

    bad = tmp_path / "bad.pt"
    torch.save({"model_factory": "no_such_module:make"}, str(bad))
    with pytest.raises(BackendError, match="cannot import factory"):
        create_backend("pytorch", str(bad))
    torch.save({"state_dict": {}}, str(bad))
    with pytest.raises(BackendError, match="model_factory"):
        create_backend("pytorch", str(bad))
    with pytest.raises(BackendError, match="no I/O names"):
        create_backend("pytorch", str(ts))
    with pytest.raises(BackendError, match="fp16 needs a CUDA"):
        create_backend("pytorch", str(ts), task="lane", precision="fp16")


def test_detector_backend(tmp_path):
    b = create_backend("onnxruntime", detector_onnx(str(tmp_path / "det.onnx")))
    out = b({"images": np.zeros((1, 3, 32, 64), np.float32)})
    assert out["boxes"].shape == (1, 6, 4) and out["labels"].dtype == np.int64


def test_pytorch_loads_a_lane_train_checkpoint(tmp_path):
    from dataclasses import asdict

    lane_model = pytest.importorskip("edge_perception.lane.model")
    torch.manual_seed(0)
    model = lane_model.build_model("tiny").eval()
    path = tmp_path / "lane_train.pt"
    torch.save({"model": model.state_dict(), "config": asdict(model.config),
                "input_size": [64, 96]}, str(path))  # fmt: skip
    b = create_backend("pytorch", str(path), task="lane")
    assert b.input_names == ["images"] and b.inputs[0].shape == (1, 3, 64, 96)
    assert b.output_names == ["logits", "mask"] and b.outputs[1].dtype == "uint8"
    x = np.random.default_rng(2).random((1, 3, 64, 96), dtype=np.float32)
    ref = model(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(b({"images": x})["logits"], ref, atol=1e-4)
    with pytest.raises(BackendError, match="model_factory"):
        create_backend("pytorch", str(path))  # no task: cannot tell how to rebuild it
