"""Evaluation metrics shared by training, evaluation and benchmarks (ROS-free, NumPy only).

Sub-modules: :mod:`edge_perception.metrics.segmentation` (confusion matrix, IoU, mIoU,
lane-line F1).
"""
