"""The flow .npz writer: np.load round trips; zipfile's exact bytes when deflating with zlib."""

import io
import zipfile
import zlib

import numpy as np
import pytest
from carla_bridge.dataset import flowzip
from carla_bridge.dataset.io import encode_flow_npz, read_flow


def _arrays():
    rng = np.random.default_rng(0)
    flow = rng.normal(0, 3, (37, 53, 2)).astype(np.float32)
    flow[:10] = 0  # long runs, as invalid pixels give
    valid = rng.random((37, 53)) > 0.3
    return flow, valid


def _zipfile_npz(members):
    """The reference: the archive Python's zipfile writes (deflate level 1, fixed dates)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, arr, compress in members:
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr, allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            zf.writestr(info, buf.getvalue(), compresslevel=1 if compress else None)
    return out.getvalue()


@pytest.mark.parametrize("compress", [True, False])
def test_round_trip_through_np_load(compress):
    flow, valid = _arrays()
    f16 = np.asfortranarray(flow.astype(np.float16))
    members = [("flow", f16, compress), ("valid", valid, True), ("c", flow[..., 0].copy(), False)]
    with np.load(io.BytesIO(flowzip.write_npz(members))) as z:
        assert z.files == ["flow", "valid", "c"]
        assert z["flow"].dtype == np.float16 and z["flow"].flags.f_contiguous
        assert np.array_equal(z["flow"], f16) and np.array_equal(z["valid"], valid)
        assert np.array_equal(z["c"], flow[..., 0])
    with pytest.raises(ValueError, match="contiguous"):
        flowzip.write_npz([("x", flow[:, ::2], True)])


@pytest.mark.parametrize("compress", [True, False])
def test_same_bytes_as_zipfile_with_zlib(monkeypatch, compress):
    flow, valid = _arrays()
    f16 = np.asfortranarray(flow.astype(np.float16))
    members = [("flow", f16, compress), ("valid", valid, True)]
    monkeypatch.setattr(flowzip, "DEFLATE", zlib)
    assert flowzip.write_npz(members) == _zipfile_npz(members)


def test_header_is_numpys():
    for arr in (np.zeros((3, 4, 2), np.float16, order="F"), np.zeros((5, 6), bool)):
        buf = io.BytesIO()
        np.lib.format.write_array(buf, arr)
        assert buf.getvalue().startswith(flowzip.npy_header(arr))


def test_encode_flow_npz_reads_back(tmp_path):
    flow, valid = _arrays()
    path = tmp_path / "f.npz"
    data = encode_flow_npz(flow, valid)
    assert data == encode_flow_npz(flow, valid)  # deterministic
    path.write_bytes(data)
    got, ok = read_flow(str(path))
    assert np.array_equal(got, flow.astype(np.float16).astype(np.float32))
    assert np.array_equal(ok, valid)
    assert flowzip.COMPRESSOR in ("isal", "zlib")
