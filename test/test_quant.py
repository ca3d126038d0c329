"""INT8 quantisation: PTQ QDQ structure and accuracy, mixed precision, dynamic, QAT, the gate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).parent / "lane"))
from edge_perception.export import ort_session  # noqa: E402
from edge_perception.lane.data import LaneDataset  # noqa: E402
from edge_perception.lane.evaluate import evaluate, evaluate_path  # noqa: E402
from edge_perception.lane.export import export_lane_model  # noqa: E402
from edge_perception.lane.losses import SegLoss  # noqa: E402
from edge_perception.lane.model import build_model  # noqa: E402
from edge_perception.quant.gate import accuracy_gate, promote  # noqa: E402
from edge_perception.quant.onnx_tools import op_histogram, quantized_conv_fraction  # noqa: E402
from edge_perception.quant.ptq import (  # noqa: E402
    ArrayCalibrationReader,
    quantize_dynamic_int8,
    quantize_static_qdq,
)
from edge_perception.quant.qat import calibrate, export_qat_onnx, prepare_qat  # noqa: E402
from lane_synth import write_dataset  # noqa: E402

SIZE = (64, 96)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny lane model trained 80 steps on a generated set, exported to FP32 ONNX."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    root = write_dataset(tmp_path_factory.mktemp("qdata"), frames=(8, 4))
    ds = LaneDataset(str(root), "train", SIZE, augment=True, seed=0)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    model = build_model("tiny")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    crit = SegLoss("bce_dice")
    for epoch in range(40):
        ds.set_epoch(epoch)
        for x, y in loader:
            loss = crit(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    fp32 = str(tmp_path_factory.mktemp("qmodels") / "fp32.onnx")
    export_lane_model(model, fp32, SIZE)
    calib = np.stack([ds.load(i)[0].transpose(2, 0, 1) / 255.0 for i in range(len(ds))])
    return {"root": str(root), "model": model, "fp32": fp32, "calib": calib.astype(np.float32)}


def test_static_ptq_is_qdq_int8_and_accurate(trained, tmp_path):
    out = str(tmp_path / "ptq.onnx")
    quantize_static_qdq(trained["fp32"], out, ArrayCalibrationReader("images", trained["calib"]))
    hist = op_histogram(out)
    assert hist.get("QuantizeLinear", 0) > 0 and hist.get("DequantizeLinear", 0) > 0
    assert quantized_conv_fraction(out) == 1.0
    g = onnx.load(out).graph
    dq_inputs = {n.input[0] for n in g.node if n.op_type == "DequantizeLinear"}
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    weight_types = {inits[n].dtype for n in dq_inputs if n in inits and inits[n].ndim == 4}
    assert weight_types == {np.dtype(np.int8)}  # per-channel INT8 conv weights
    q_types = {
        inits[n.input[2]].dtype
        for n in g.node
        if n.op_type == "QuantizeLinear" and n.input[2] in inits
    }
    assert q_types == {np.dtype(np.uint8)}  # UINT8 activations
    fp = evaluate_path(trained["fp32"], trained["root"], progress=False)
    q = evaluate_path(out, trained["root"], progress=False)
    assert fp["miou"] > 0.35  # the model learnt something, so the comparison means something
    assert abs(fp["miou"] - q["miou"]) < 0.03


def test_mixed_precision_and_method_choice(trained, tmp_path):
    graph = onnx.load(trained["fp32"]).graph
    head = [n.name for n in graph.node if n.op_type == "Conv"][-1]
    out = str(tmp_path / "mixed.onnx")
    quantize_static_qdq(
        trained["fp32"],
        out,
        ArrayCalibrationReader("images", trained["calib"]),
        method="percentile",
        nodes_to_exclude=[head],
        preprocess=False,
    )
    frac = quantized_conv_fraction(out)
    n_conv = op_histogram(out)["Conv"]
    assert frac == pytest.approx((n_conv - 1) / n_conv)
    none = str(tmp_path / "noconv.onnx")
    quantize_static_qdq(
        trained["fp32"],
        none,
        ArrayCalibrationReader("images", trained["calib"]),
        op_types_to_exclude={"Conv"},
        preprocess=False,
    )
    assert quantized_conv_fraction(none) == 0.0
    with pytest.raises(ValueError, match="calibration method"):
        quantize_static_qdq(
            trained["fp32"], none, ArrayCalibrationReader("images", trained["calib"]), method="kl"
        )


def test_dynamic_quantisation_runs(trained, tmp_path):
    out = quantize_dynamic_int8(trained["fp32"], str(tmp_path / "dyn.onnx"))
    hist = op_histogram(out)
    assert "ConvInteger" in hist or "DynamicQuantizeLinear" in hist
    sess = ort_session(out)
    logits, mask = sess.run(None, {"images": trained["calib"][:2]})
    assert logits.shape == (2, 4, *SIZE) and mask.dtype == np.uint8


def test_qat_fake_quant_export_matches_torch(trained, tmp_path):
    model = trained["model"]
    qmodel = prepare_qat(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in qmodel.modules())  # folded
    calibrate(qmodel, [torch.from_numpy(trained["calib"])])
    qmodel.eval()
    x = torch.from_numpy(trained["calib"][:2])
    with torch.no_grad():
        ref, fq = model(x), qmodel(x)
    # Rounding visible but small, as a relative RMS error over the whole output (2 x 4 x 64 x 96
    # = 49k logits), not max|diff| / max|ref|. The weights come out of a short training run whose
    # float kernels differ per CPU (AVX2 / AVX-512 / AMX: other summation orders, FMA
    # contraction), so on another CPU a few activations land on the other side of a rounding
    # boundary; one of them moves the max by a whole quantisation step: the max ratio was 0.110
    # with AVX-512 on a Xeon and 0.059 with ATEN_CPU_CAPABILITY=default on the same machine (the
    # old bound 0.1 sat between them), while the RMS ratio was 0.019 and 0.011. 8-bit fake
    # quantisation gives a few percent; a broken one (wrong scale or zero point, a tensor not
    # dequantised, BN folded wrongly) gives errors of the order of the signal, so 0.25 (over 10x
    # the measured values) separates the two with a margin no instruction set crosses.
    err = (ref - fq).float()
    rms_rel = float(err.pow(2).mean().sqrt() / ref.float().pow(2).mean().sqrt())
    assert 0 < rms_rel < 0.25, rms_rel
    # straight-through estimator: gradients reach the float weights
    qmodel.train()
    qmodel(x).mean().backward()
    assert all(p.grad is not None for p in qmodel.parameters())
    qmodel.eval().deploy()
    path = str(tmp_path / "qat.onnx")
    export_qat_onnx(qmodel, (x[:1],), path, ["images"], ["logits", "mask"])
    assert quantized_conv_fraction(path) == 1.0
    g = onnx.load(path).graph
    float4d = [
        list(i.dims)
        for i in g.initializer
        if len(i.dims) == 4 and i.data_type == onnx.TensorProto.FLOAT
    ]
    assert float4d == [[1, 3, 1, 1]] * len(float4d)  # only mean/std; conv weights are INT8
    out = ort_session(path).run(None, {"images": x.numpy()})
    with torch.no_grad():
        t_logits, t_mask = qmodel(x)
    diff = np.abs(out[0] - t_logits.numpy())
    # ORT's integer kernels round a few values to the neighbouring step: small mean difference
    assert diff.mean() < 0.02 * float(t_logits.abs().mean())
    assert np.mean(out[1] == t_mask.numpy()) > 0.99
    ds = LaneDataset(trained["root"], "val", SIZE)
    onnx_miou = evaluate(
        lambda a: ort_session(path).run(["mask"], {"images": a})[0], ds, progress=False
    )["miou"]
    assert onnx_miou > 0.3


def test_gate_by_hand_and_promotion(tmp_path):
    ok = accuracy_gate(0.800, 0.791)  # 0.9 points
    assert ok.passed and ok.drop_points == pytest.approx(0.9)
    bad = accuracy_gate(0.800, 0.789)  # 1.1 points
    assert not bad.passed and "exceeds" in bad.reason
    assert accuracy_gate(0.8, 0.85).passed  # INT8 better is fine
    assert not accuracy_gate(0.8, float("nan")).passed
    src = tmp_path / "cand.onnx"
    src.write_bytes(b"model")
    dest = tmp_path / "models" / "m_int8.onnx"
    assert promote(ok, str(src), str(dest), {"precision": "int8"})
    assert dest.read_bytes() == b"model"
    assert json.loads((tmp_path / "models" / "m_int8.json").read_text())["gate"]["passed"]
    assert not promote(bad, str(src), str(dest))
    assert not dest.exists() and not (tmp_path / "models" / "m_int8.json").exists()


def test_symmetric_activations_make_a_tensorrt_buildable_qdq_model(trained, tmp_path):
    from edge_perception.tensorrt.builder import BuildError, BuildOptions, calibration_plan

    reader = ArrayCalibrationReader("images", trained["calib"])
    asym = quantize_static_qdq(trained["fp32"], str(tmp_path / "asym.onnx"), reader)
    reader = ArrayCalibrationReader("images", trained["calib"])
    sym = quantize_static_qdq(
        trained["fp32"], str(tmp_path / "sym.onnx"), reader, symmetric_activations=True
    )
    g = onnx.load(sym).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    zps = [inits[n.input[2]] for n in g.node if n.op_type == "QuantizeLinear"]
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)
    opts = BuildOptions(precision="int8")
    assert calibration_plan(sym, opts, str(tmp_path / "e.engine"))[0] == "qdq"
    with pytest.raises(BuildError, match="asymmetric"):
        calibration_plan(asym, opts, str(tmp_path / "e.engine"))
    # The same artifact still runs on ONNX Runtime, close to FP32.
    fp = evaluate_path(trained["fp32"], trained["root"], progress=False)
    q = evaluate_path(sym, trained["root"], progress=False)
    assert abs(fp["miou"] - q["miou"]) < 0.05
