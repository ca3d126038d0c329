"""TensorRT deployment: engine builder, precision policies, INT8 calibration, engine cache.

Submodules (import them directly; nothing here imports TensorRT):

* :mod:`.policy` - layer-name regex -> precision rules, presets (yolact, rtdetr, lane)
* :mod:`.calibrator` - calibration frames, calibration cache, INT8 calibrators
* :mod:`.cache` - engine key, sidecar JSON, validation
* :mod:`.builder` - ONNX -> engine (``build_engine``, ``ensure_engine``)
* :mod:`.cuda` - device memory / streams through cuda-python, pycuda or torch
* :mod:`.cli` - ``edge-perception trt-build``
"""
