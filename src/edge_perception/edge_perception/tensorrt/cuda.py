"""Device memory, streams and device queries through whichever CUDA binding is importable.

TensorRT's Python API takes raw device addresses (``context.set_tensor_address(name, ptr)``) and a
stream handle (``execute_async_v3(stream)``); it does not allocate them. Three bindings can:

* ``cuda-python`` (``cuda.bindings.runtime`` on 12.x, ``cuda.cudart`` on 11.x; NVIDIA's choice),
* ``pycuda`` (common on JetPack images), using the device's primary context so the memory is
  shared with the CUDA runtime that TensorRT and PyTorch use,
* ``torch`` with CUDA (device tensors as buffers, ``torch.cuda.Stream``).

:func:`get_cuda_api` picks the first importable one in that order (or the one named). All
addresses are plain ``int``. Every import is lazy: this module imports on a machine without CUDA,
and :func:`available_apis` then returns ``[]``.

Runtime module: Python 3.8 compatible.
"""

from __future__ import annotations

import ctypes
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

API_NAMES = ("cuda-python", "pycuda", "torch")


class CudaUnavailableError(RuntimeError):
    """No usable CUDA binding / device; the message lists what was tried and how to fix it."""


class CudaApi:
    """The few CUDA operations TensorRT inference and calibration need."""

    name = "abstract"

    def malloc(self, nbytes: int) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def free(self, ptr: int) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def create_stream(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def destroy_stream(self, stream: int) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def synchronize(self, stream: int) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def memcpy_htod_async(self, dst: int, src: np.ndarray, stream: int) -> None:
        raise NotImplementedError  # pragma: no cover - interface

    def memcpy_dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None:
        raise NotImplementedError  # pragma: no cover - interface

    def host_empty(self, shape: Sequence[int], dtype: Any) -> np.ndarray:
        """A host array for device transfers (page-locked where the binding can)."""
        return np.empty(tuple(shape), dtype=dtype)

    def device_info(self) -> Dict[str, str]:  # pragma: no cover - interface
        """``{"gpu": name, "compute_capability": "major.minor"}`` of the current device."""
        raise NotImplementedError

    def memcpy_htod(self, dst: int, src: np.ndarray) -> None:
        """Blocking host-to-device copy (used by the calibrator)."""
        stream = self.create_stream()
        try:
            self.memcpy_htod_async(dst, np.ascontiguousarray(src), stream)
            self.synchronize(stream)
        finally:
            self.destroy_stream(stream)

    def push(self) -> None:
        """Make this binding's context current on the calling thread (pycuda only)."""

    def pop(self) -> None:
        """Undo :meth:`push`."""

    def close(self) -> None:
        """Release the binding's context (pycuda only)."""


def _pinned_view(ptr: int, shape: Sequence[int], dtype: Any) -> np.ndarray:
    dt = np.dtype(dtype)
    count = int(np.prod(shape)) if len(shape) else 1
    buf = (ctypes.c_byte * (count * dt.itemsize)).from_address(ptr)
    return np.frombuffer(buf, dtype=dt, count=count).reshape(tuple(shape))


class CudaPythonApi(CudaApi):
    """cuda-python runtime API (``cudaMalloc``, ``cudaMemcpyAsync``, ``cudaStreamCreate``)."""

    name = "cuda-python"

    def __init__(self, device: int = 0) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart
        self.rt = cudart
        self.device = device
        self._call(cudart.cudaSetDevice(device))
        self._host: Dict[int, int] = {}

    def _call(self, result: Any) -> Any:
        err = result[0] if isinstance(result, tuple) else result
        if err != self.rt.cudaError_t.cudaSuccess:
            raise RuntimeError("CUDA runtime error: %s" % (err,))
        if isinstance(result, tuple):
            return result[1] if len(result) == 2 else result[1:]
        return None

    def malloc(self, nbytes: int) -> int:
        return int(self._call(self.rt.cudaMalloc(max(int(nbytes), 1))))

    def free(self, ptr: int) -> None:
        self._call(self.rt.cudaFree(ptr))

    def create_stream(self) -> int:
        return int(self._call(self.rt.cudaStreamCreate()))

    def destroy_stream(self, stream: int) -> None:
        self._call(self.rt.cudaStreamDestroy(stream))

    def synchronize(self, stream: int) -> None:
        self._call(self.rt.cudaStreamSynchronize(stream))

    def memcpy_htod_async(self, dst: int, src: np.ndarray, stream: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self.rt.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes, kind, stream))

    def memcpy_dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self.rt.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes, kind, stream))

    def host_empty(self, shape: Sequence[int], dtype: Any) -> np.ndarray:
        nbytes = max(int(np.prod(shape)) * np.dtype(dtype).itemsize, 1)
        ptr = int(self._call(self.rt.cudaMallocHost(nbytes)))
        arr = _pinned_view(ptr, shape, dtype)
        self._host[id(arr)] = ptr
        return arr

    def device_info(self) -> Dict[str, str]:
        prop = self._call(self.rt.cudaGetDeviceProperties(self.device))
        name = prop.name
        if isinstance(name, bytes):
            name = name.split(b"\0", 1)[0].decode("utf-8", "replace")
        return {"gpu": str(name), "compute_capability": "%d.%d" % (prop.major, prop.minor)}

    def close(self) -> None:
        for ptr in self._host.values():
            self.rt.cudaFreeHost(ptr)
        self._host.clear()


class PyCudaApi(CudaApi):
    """pycuda driver API on the device's primary context (shared with the CUDA runtime)."""

    name = "pycuda"

    def __init__(self, device: int = 0) -> None:
        import pycuda.driver as cuda

        cuda.init()
        self.drv = cuda
        self.dev = cuda.Device(device)
        self.ctx = self.dev.retain_primary_context()
        self._allocs: Dict[int, Any] = {}
        self._streams: Dict[int, Any] = {}

    def push(self) -> None:
        self.ctx.push()

    def pop(self) -> None:
        self.drv.Context.pop()

    def malloc(self, nbytes: int) -> int:
        self.push()
        try:
            alloc = self.drv.mem_alloc(max(int(nbytes), 1))
        finally:
            self.pop()
        self._allocs[int(alloc)] = alloc
        return int(alloc)

    def free(self, ptr: int) -> None:
        alloc = self._allocs.pop(ptr, None)
        if alloc is not None:
            self.push()
            try:
                alloc.free()
            finally:
                self.pop()

    def create_stream(self) -> int:
        self.push()
        try:
            stream = self.drv.Stream()
        finally:
            self.pop()
        self._streams[int(stream.handle)] = stream
        return int(stream.handle)

    def destroy_stream(self, stream: int) -> None:
        self.push()  # the stream is destroyed with its last reference: needs its context
        try:
            self._streams.pop(stream, None)
        finally:
            self.pop()

    def synchronize(self, stream: int) -> None:
        self._streams[stream].synchronize()

    def memcpy_htod_async(self, dst: int, src: np.ndarray, stream: int) -> None:
        self.drv.memcpy_htod_async(dst, src, self._streams[stream])

    def memcpy_dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None:
        self.drv.memcpy_dtoh_async(dst, src, self._streams[stream])

    def memcpy_htod(self, dst: int, src: np.ndarray) -> None:
        self.push()
        try:
            self.drv.memcpy_htod(dst, np.ascontiguousarray(src))
        finally:
            self.pop()

    def host_empty(self, shape: Sequence[int], dtype: Any) -> np.ndarray:
        self.push()
        try:
            return np.asarray(self.drv.pagelocked_empty(tuple(shape), dtype))
        finally:
            self.pop()

    def device_info(self) -> Dict[str, str]:
        major, minor = self.dev.compute_capability()
        return {"gpu": str(self.dev.name()), "compute_capability": "%d.%d" % (major, minor)}

    def close(self) -> None:
        if self.ctx is None:
            return
        self.push()
        try:
            for alloc in self._allocs.values():
                alloc.free()
            self._allocs.clear()
            self._streams.clear()
        finally:
            self.pop()
        self.ctx.detach()
        self.ctx = None


class TorchCudaApi(CudaApi):
    """PyTorch's CUDA allocator and streams (buffers are uint8 device tensors kept alive here)."""

    name = "torch"

    def __init__(self, device: int = 0) -> None:
        import torch

        if not torch.cuda.is_available():
            raise CudaUnavailableError("torch is installed without a usable CUDA device")
        self.torch = torch
        self.device = torch.device("cuda", device)
        self._tensors: Dict[int, Any] = {}
        self._streams: Dict[int, Any] = {}
        self._host: Dict[int, Any] = {}

    def malloc(self, nbytes: int) -> int:
        t = self.torch.empty(max(int(nbytes), 1), dtype=self.torch.uint8, device=self.device)
        self._tensors[int(t.data_ptr())] = t
        return int(t.data_ptr())

    def free(self, ptr: int) -> None:
        self._tensors.pop(ptr, None)

    def create_stream(self) -> int:
        stream = self.torch.cuda.Stream(device=self.device)
        self._streams[int(stream.cuda_stream)] = stream
        return int(stream.cuda_stream)

    def destroy_stream(self, stream: int) -> None:
        self._streams.pop(stream, None)

    def synchronize(self, stream: int) -> None:
        self._streams[stream].synchronize()

    def _device_view(self, ptr: int, nbytes: int) -> Any:
        for base, t in self._tensors.items():
            if base <= ptr and ptr + nbytes <= base + t.numel():
                return t[ptr - base : ptr - base + nbytes]
        raise ValueError("address %#x is not a buffer of this TorchCudaApi" % ptr)

    def memcpy_htod_async(self, dst: int, src: np.ndarray, stream: int) -> None:
        host = self.torch.from_numpy(np.ascontiguousarray(src).reshape(-1).view(np.uint8))
        with self.torch.cuda.stream(self._streams[stream]):
            self._device_view(dst, src.nbytes).copy_(host, non_blocking=True)

    def memcpy_dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None:
        host = self.torch.from_numpy(dst.reshape(-1).view(np.uint8))
        with self.torch.cuda.stream(self._streams[stream]):
            host.copy_(self._device_view(src, dst.nbytes), non_blocking=True)

    def host_empty(self, shape: Sequence[int], dtype: Any) -> np.ndarray:
        nbytes = max(int(np.prod(shape)) * np.dtype(dtype).itemsize, 1)
        t = self.torch.empty(nbytes, dtype=self.torch.uint8, pin_memory=True)
        arr = t.numpy()[: int(np.prod(shape)) * np.dtype(dtype).itemsize]
        arr = arr.view(dtype).reshape(tuple(shape))
        self._host[id(arr)] = t
        return arr

    def device_info(self) -> Dict[str, str]:
        major, minor = self.torch.cuda.get_device_capability(self.device)
        name = self.torch.cuda.get_device_name(self.device)
        return {"gpu": str(name), "compute_capability": "%d.%d" % (major, minor)}


_CLASSES = {"cuda-python": CudaPythonApi, "pycuda": PyCudaApi, "torch": TorchCudaApi}


def get_cuda_api(prefer: Optional[str] = None, device: int = 0) -> CudaApi:
    """The first working binding among ``prefer`` (if given) or ``cuda-python, pycuda, torch``.

    Raises :class:`CudaUnavailableError` listing each binding's failure when none works.
    """
    if prefer not in (None, "", "auto") and prefer not in _CLASSES:
        raise CudaUnavailableError(
            "unknown CUDA binding %r; choose one of auto, %s" % (prefer, ", ".join(API_NAMES))
        )
    order: List[str] = [str(prefer)] if prefer in _CLASSES else list(API_NAMES)
    errors: List[str] = []
    for name in order:
        try:
            return _CLASSES[name](device)
        except Exception as exc:  # ImportError, no driver, no device: try the next binding
            errors.append("%s: %s" % (name, exc))
    raise CudaUnavailableError(
        "no usable CUDA binding (%s). TensorRT needs an NVIDIA GPU plus one of: "
        "pip install cuda-python (matching your CUDA), pycuda, or a CUDA build of torch"
        % "; ".join(errors)
    )


def available_apis() -> List[str]:
    """Bindings that import here (cheap check: no device is opened)."""
    import importlib.util

    found = []
    if importlib.util.find_spec("cuda") is not None:
        found.append("cuda-python")
    if importlib.util.find_spec("pycuda") is not None:
        found.append("pycuda")
    try:
        import torch

        if torch.cuda.is_available():
            found.append("torch")
    except ImportError:
        pass
    return found
