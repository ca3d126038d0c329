"""bench/vis_tradeoff.py: keyframe policies placed at their cost, against hand-made results."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "vis_tradeoff.py"


@pytest.fixture(scope="module")
def tradeoff():
    spec = importlib.util.spec_from_file_location("vis_tradeoff", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return mod


def _mode(k, keys, ap):
    return {"keyframe_interval": k, "key_ratio": keys, "frame_mask_ap": ap, "idf1": 0.7}


def _write(path, modes, params=None, data="d"):
    res = {"data": data, "split": "val", "frames": 90, "modes": modes}
    if params is not None:
        res["node_parameters"] = params
    path.write_text(json.dumps(res))
    return str(path)


def test_costs_drops_and_the_target(tradeoff, tmp_path):
    speed = tmp_path / "speed.json"
    speed.write_text(json.dumps({"ratios": {"nonkey_vs_key_path": 0.4}}))
    a = _write(tmp_path / "a.json", {"image": _mode(1, 1.0, 0.56), "video": _mode(5, 0.3, 0.545)})
    b = _write(tmp_path / "b.json", {"video": _mode(5, 0.2, 0.552)}, {"max_mean_flow_px": 0})
    out = tmp_path / "out"
    rc = tradeoff.main([a, b, "--speed", str(speed), "--name", "t", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "t.json").read_text())
    rows = {r["policy"]: r for r in res["rows"]}
    trig, interval = rows["K = 5, flow trigger on"], rows["K = 5, flow trigger off"]
    assert trig["cost"] == pytest.approx(0.3 + 0.7 * 0.4)  # 0.58: over the cost bound
    assert trig["drop_points"] == pytest.approx(1.5) and not trig["meets"]
    assert interval["cost"] == pytest.approx(0.2 + 0.8 * 0.4)  # 0.52
    assert interval["drop_points"] == pytest.approx(0.8) and interval["meets"]
    assert (out / "t.png").stat().st_size > 0 and "| K = 5, flow trigger off |" in (
        out / "t.md"
    ).read_text()


def test_mixed_data_or_no_image_mode_is_one_line(tradeoff, tmp_path, capsys):
    speed = tmp_path / "speed.json"
    speed.write_text(json.dumps({"ratios": {"nonkey_vs_key_path": 0.4}}))
    a = _write(tmp_path / "a.json", {"image": _mode(1, 1.0, 0.56)})
    b = _write(tmp_path / "b.json", {"video": _mode(5, 0.2, 0.5)}, data="other")
    for files in ([a, b], [b]):
        rc = tradeoff.main([*files, "--speed", str(speed), "--out", str(tmp_path / "o")])
        assert rc == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "vis_tradeoff: error" in err[0]
    assert not (tmp_path / "o").exists()
