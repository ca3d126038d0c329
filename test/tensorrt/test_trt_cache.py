"""Engine cache key, sidecar and mismatch handling; TensorRT-free parts of the builder."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from _trt_graphs import conv_chain
from edge_perception.backends.base import BackendError
from edge_perception.tensorrt import cache
from edge_perception.tensorrt.builder import (
    BuildError,
    BuildOptions,
    calibration_plan,
    ensure_engine,
    expected_key,
    onnx_io,
    options_from_kwargs,
    rebuild_command,
    resolve_shapes,
)
from edge_perception.tensorrt.policy import PRESETS
from edge_perception.tensorrt.shapes import parse_shape_arg

PLATFORM = {"tensorrt_version": "8.5.2.2", "gpu": "Xavier", "compute_capability": "7.2"}


def make_key(**changes):
    base = dict(
        onnx_sha256="ab" * 32,
        tensorrt_version="8.5.2.2",
        gpu="Xavier",
        compute_capability="7.2",
        precision="int8",
        dla_core=None,
        policy=PRESETS["yolact"].to_dict(),
        calibration="images:" + "cd" * 32,
        input_shapes={"images": [[1, 3, 384, 640]] * 3},
    )
    base.update(changes)
    return cache.EngineKey(**base)


def test_key_digest_is_canonical_and_sensitive_to_every_field():
    key = make_key()
    assert key.digest() == make_key().digest()
    assert cache.EngineKey.from_dict(json.loads(json.dumps(key.to_dict()))) == key
    variants = [
        make_key(onnx_sha256="ef" * 32),
        make_key(tensorrt_version="10.3.0"),
        make_key(gpu="Orin"),
        make_key(compute_capability="8.7"),
        make_key(precision="fp16"),
        make_key(dla_core=0),
        make_key(policy=PRESETS["lane"].to_dict()),
        make_key(calibration="images:" + "00" * 32),
        make_key(input_shapes={"images": [[1, 3, 512, 512]] * 3}),
    ]
    assert len({v.digest() for v in variants} | {key.digest()}) == len(variants) + 1


def test_diff_names_each_differing_field_and_honours_ignore():
    diffs = cache.diff_keys(make_key(), make_key(tensorrt_version="8.6.1", dla_core=1))
    assert diffs == [
        "dla_core: engine has 1, expected null",
        "tensorrt_version: engine has 8.6.1, expected 8.5.2.2",
    ]
    assert cache.diff_keys(make_key(), make_key(calibration="qdq"), ignore=["calibration"]) == []


def test_diagnostics_are_flat_strings():
    diag = make_key(dla_core=1).diagnostics()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in diag.items())
    assert diag["precision_policy"] == "yolact" and diag["dla_core"] == "1"
    assert diag["engine_key"] == make_key(dla_core=1).digest()[:16]


def test_engine_path_beside_model_or_in_cache_dir(tmp_path):
    model = str(tmp_path / "models" / "lane.onnx")
    assert cache.engine_path_for(model, "fp16") == str(tmp_path / "models" / "lane.fp16.engine")
    assert cache.engine_path_for(model, "int8", 1, str(tmp_path / "c")) == str(
        tmp_path / "c" / "lane.int8.dla1.engine"
    )


def test_sidecar_round_trip_and_check_states(tmp_path):
    engine = str(tmp_path / "m.fp16.engine")
    key = make_key()
    assert cache.check_engine(engine, key).state == "missing"
    cache.write_engine(engine, b"\x01\x02engine", key, {"onnx_path": "/x/m.onnx"})
    assert open(engine, "rb").read() == b"\x01\x02engine"
    doc = cache.read_sidecar(engine)
    assert doc["key"] == key.to_dict() and doc["digest"] == key.digest()
    assert doc["onnx_path"] == "/x/m.onnx"
    status = cache.check_engine(engine, key)
    assert status.ok and status.found == key
    status = cache.check_engine(engine, make_key(gpu="Orin", compute_capability="8.7"))
    assert status.state == "mismatch"
    assert status.differences == [
        "compute_capability: engine has 7.2, expected 8.7",
        "gpu: engine has Xavier, expected Orin",
    ]
    assert "built for something else" in status.explain()
    # no stray temp files from the atomic writes
    assert sorted(os.listdir(tmp_path)) == ["m.fp16.engine", "m.fp16.engine.json"]


def test_engine_without_sidecar_is_unverified_and_bad_sidecars_fail(tmp_path):
    engine = tmp_path / "m.fp16.engine"
    engine.write_bytes(b"x")
    assert cache.check_engine(str(engine), make_key()).state == "unverified"
    side = tmp_path / "m.fp16.engine.json"
    side.write_text("{not json")
    with pytest.raises(cache.EngineCacheError, match="not valid JSON"):
        cache.check_engine(str(engine), make_key())
    side.write_text(json.dumps({"digest": "x"}))
    with pytest.raises(cache.EngineCacheError, match="no 'key'"):
        cache.read_sidecar(str(engine))
    side.write_text(json.dumps({"key": {"gpu": "x"}}))
    with pytest.raises(cache.EngineCacheError, match="lacks field"):
        cache.check_engine(str(engine), make_key())


def test_rewriting_an_engine_drops_the_old_sidecar_first(tmp_path):
    engine = str(tmp_path / "m.fp16.engine")
    cache.write_engine(engine, b"old", make_key(), {})
    # simulate a crash between engine and sidecar: the new engine must not inherit the old key
    os.replace(cache.sidecar_path(engine), str(tmp_path / "saved.json"))
    cache.write_engine(engine, b"new", make_key(precision="fp16"), {})
    assert cache.read_sidecar(engine)["key"]["precision"] == "fp16"


def test_mismatch_error_is_a_backend_error_naming_the_fix(tmp_path):
    status = cache.CacheStatus("mismatch", "/m.engine", ["gpu: engine has A, expected B"])
    err = cache.mismatch_error(status, "edge-perception trt-build m.onnx")
    assert isinstance(err, BackendError)
    assert "gpu: engine has A, expected B" in str(err)
    assert "edge-perception trt-build m.onnx" in str(err) and "build_if_missing" in str(err)


# ---------------------------------------------------------------- builder, TensorRT-free part


def test_ensure_engine_without_building_checks_the_key(tmp_path):
    model = str(conv_chain(tmp_path / "lane.onnx", ["/backbone/Conv", "/head/Conv"]))
    opts = BuildOptions(precision="fp16")
    with pytest.raises(cache.EngineCacheError, match="no engine at .*lane.fp16.engine") as exc:
        ensure_engine(model, opts, build_if_missing=False, platform=PLATFORM)
    assert "edge-perception trt-build %s --precision fp16" % model in str(exc.value)

    shapes = resolve_shapes(onnx_io(model)["inputs"], {})
    key = expected_key(model, opts, PLATFORM, None, shapes)
    engine = cache.engine_path_for(model, "fp16")
    cache.write_engine(engine, b"plan", key, {})
    path, found, how = ensure_engine(model, opts, build_if_missing=False, platform=PLATFORM)
    assert (path, found, how) == (engine, key, "cached")

    # another TensorRT on the device: refused with the differing field
    other = dict(PLATFORM, tensorrt_version="8.6.1")
    with pytest.raises(cache.EngineCacheError, match="tensorrt_version: engine has 8.5.2.2"):
        ensure_engine(model, opts, build_if_missing=False, platform=other)
    # the model changed (re-exported): its sha256 no longer matches
    conv_chain(tmp_path / "lane.onnx", ["/backbone/Conv", "/other/Conv"])
    with pytest.raises(cache.EngineCacheError, match="onnx_sha256"):
        ensure_engine(model, opts, build_if_missing=False, platform=PLATFORM)


def test_int8_engine_without_local_images_accepts_its_recorded_calibration(tmp_path):
    model = str(conv_chain(tmp_path / "det.onnx", ["/backbone/Conv"]))
    opts = BuildOptions(precision="int8", policy=PRESETS["rtdetr"])
    shapes = resolve_shapes(onnx_io(model)["inputs"], {})
    key = expected_key(model, opts, PLATFORM, "images:" + "12" * 32, shapes)
    cache.write_engine(cache.engine_path_for(model, "int8"), b"plan", key, {})
    _, found, how = ensure_engine(model, opts, build_if_missing=False, platform=PLATFORM)
    assert how == "cached" and found.calibration == key.calibration
    # the calibration cache its build wrote beside it does not make it stale either
    (tmp_path / "det.int8.engine.calib").write_bytes(b"TRT-8502-EntropyCalibration2\n")
    _, _, how = ensure_engine(model, opts, build_if_missing=False, platform=PLATFORM)
    assert how == "cached"
    # other calibration images given explicitly: a different engine
    import cv2

    (tmp_path / "imgs").mkdir()
    cv2.imwrite(str(tmp_path / "imgs" / "0.jpg"), np.zeros((8, 8, 3), np.uint8))
    opts_imgs = BuildOptions(
        precision="int8", policy=PRESETS["rtdetr"], calib_data=str(tmp_path / "imgs")
    )
    with pytest.raises(cache.EngineCacheError, match="calibration: engine has images:1212"):
        ensure_engine(model, opts_imgs, build_if_missing=False, platform=PLATFORM)
    # but a different policy is a different engine
    opts_lane = BuildOptions(precision="int8", policy=PRESETS["lane"])
    with pytest.raises(cache.EngineCacheError, match="policy"):
        ensure_engine(model, opts_lane, build_if_missing=False, platform=PLATFORM)


def test_resolve_shapes(tmp_path):
    static = onnx_io(str(conv_chain(tmp_path / "s.onnx", ["/a/Conv"])))["inputs"]
    assert resolve_shapes(static, {}) == {"images": [[1, 3, 16, 16]] * 3}
    dyn_batch = onnx_io(str(conv_chain(tmp_path / "b.onnx", ["/a/Conv"], ("N", 3, 16, 16))))
    assert dyn_batch["inputs"]["images"]["shape"] == [-1, 3, 16, 16]
    assert resolve_shapes(dyn_batch["inputs"], {}) == {"images": [[1, 3, 16, 16]] * 3}
    given = {"images": ((1, 3, 16, 16), (2, 3, 16, 16), (4, 3, 16, 16))}
    assert resolve_shapes(dyn_batch["inputs"], given)["images"][2] == [4, 3, 16, 16]
    dyn_hw = onnx_io(str(conv_chain(tmp_path / "h.onnx", ["/a/Conv"], (1, 3, "H", "W"))))
    with pytest.raises(BuildError, match="--shape images:"):
        resolve_shapes(dyn_hw["inputs"], {})
    with pytest.raises(BuildError, match="does not fit"):
        resolve_shapes(static, {"images": ((1, 3, 8, 8),) * 3})
    with pytest.raises(BuildError, match="min <= opt <= max"):
        resolve_shapes(dyn_batch["inputs"], {"images": given["images"][::-1]})
    with pytest.raises(BuildError, match="unknown input"):
        resolve_shapes(static, {"image": ((1, 3, 16, 16),) * 3})


def test_parse_shape_arg():
    assert parse_shape_arg("images:1x3x384x640") == ("images", ((1, 3, 384, 640),) * 3)
    name, (lo, opt, hi) = parse_shape_arg("images:1x3x8x8,2x3x8x8,4x3x8x8")
    assert (name, lo[0], opt[0], hi[0]) == ("images", 1, 2, 4)
    for bad in ("images", "images:1x3xAx8", "images:1x3x8x8,2x3x8x8", "images:0x3x8x8", ":1x3"):
        with pytest.raises(ValueError):
            parse_shape_arg(bad)


def test_calibration_plan(tmp_path):
    import cv2
    import numpy as np

    model = str(conv_chain(tmp_path / "m.onnx", ["/a/Conv"]))
    engine = str(tmp_path / "m.int8.engine")
    assert calibration_plan(model, BuildOptions("fp16"), engine) == ("none", None, [])
    qdq = str(conv_chain(tmp_path / "q.onnx", ["/a/Conv"], qdq=True))
    assert calibration_plan(qdq, BuildOptions("int8"), engine) == ("qdq", "qdq", [])
    # ONNX Runtime's default (UINT8, asymmetric) Q/DQ: TensorRT would refuse it; say how to fix
    asym = str(
        conv_chain(tmp_path / "a.onnx", ["/a/Conv"], qdq=True, zero_point=128, zero_dtype=np.uint8)
    )
    with pytest.raises(BuildError, match="zero point \\[128\\] is not 0.*ActivationSymmetric"):
        calibration_plan(asym, BuildOptions("int8"), engine)
    # an all-zero UINT8 zero point is fine
    u0 = str(conv_chain(tmp_path / "u.onnx", ["/a/Conv"], qdq=True, zero_dtype=np.uint8))
    assert calibration_plan(u0, BuildOptions("int8"), engine)[0] == "qdq"
    with pytest.raises(BuildError, match="--calib-data"):
        calibration_plan(model, BuildOptions("int8"), engine)
    (tmp_path / "m.int8.engine.calib").write_bytes(b"TRT-8502-EntropyCalibration2\n")
    mode, value, files = calibration_plan(model, BuildOptions("int8"), engine)
    assert mode == "calibration-cache" and value.startswith("cache:") and files == []
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(3):
        cv2.imwrite(str(imgs / ("%d.jpg" % i)), np.full((8, 8, 3), i * 40, np.uint8))
    mode, value, files = calibration_plan(
        model, BuildOptions("int8", calib_data=str(imgs)), engine
    )
    assert mode == "calibration" and value.startswith("images:") and len(files) == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(precision="int4"), "precision"),
        (dict(precision="fp16", policy=PRESETS["lane"]), "--precision int8"),
        (dict(precision="fp32", policy=PRESETS["yolact"].__class__("p", (), "fp16")), "fp32"),
        (dict(precision="fp32", dla_core=0), "DLA"),
        (dict(workspace_mb=0), "workspace"),
        (dict(calib_algorithm="percentile"), "calibration algorithm"),
    ],
)
def test_build_options_validation(kwargs, message):
    with pytest.raises(BuildError, match=message):
        BuildOptions(**kwargs).validate()


def test_options_from_kwargs():
    opts = options_from_kwargs(precision="int8", policy="lane", dla_core=-1, workspace=256)
    assert opts.policy is PRESETS["lane"] and opts.dla_core is None and opts.workspace_mb == 256
    with pytest.raises(BuildError, match="unknown TensorRT build option 'threads'"):
        options_from_kwargs(threads=2)
    # ROS parameter spellings: "" = unset, shapes as strings
    ros = options_from_kwargs(
        precision="fp16", policy="", calib_data="", shapes=["images:1x3x8x8,2x3x8x8,4x3x8x8"]
    )
    assert ros.policy is None and ros.calib_data is None
    assert ros.shapes == {"images": ((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))}
    with pytest.raises(BuildError, match="shapes: expected NAME:DIMS"):
        options_from_kwargs(shapes="images")


def test_rebuild_command_lists_the_options():
    opts = BuildOptions(
        "int8",
        policy=PRESETS["yolact"],
        dla_core=0,
        calib_data="/data/carla",
        shapes={"images": ((1, 3, 8, 8), (1, 3, 8, 8), (2, 3, 8, 8))},
    )
    assert rebuild_command("m.onnx", opts) == (
        "edge-perception trt-build m.onnx --precision int8 --policy yolact --dla-core 0 "
        "--calib-data /data/carla --shape images:1x3x8x8,1x3x8x8,2x3x8x8"
    )
