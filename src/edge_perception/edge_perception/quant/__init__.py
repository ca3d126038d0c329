"""INT8 quantisation shared by every model (ROS-free; training/tool side, Python 3.11).

- :mod:`.ptq`: ONNX Runtime static post-training quantisation to QDQ (activations QUInt8, weights
  QInt8 per channel; MinMax / Entropy / Percentile calibration; mixed precision through
  ``nodes_to_exclude`` / ``op_types_to_exclude``) and dynamic quantisation for comparison.
- :mod:`.qat`: quantisation-aware fine-tuning in PyTorch with eager fake-quant modules, exported to
  the same QDQ ONNX layout.
- :mod:`.gate`: the accuracy gate that promotes an INT8 model only within 1.0 point of FP32.
- :mod:`.onnx_tools`: QDQ graph inspection and weight folding helpers.
"""
