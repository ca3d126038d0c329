"""edge_perception: a ROS-free perception core for edge boards, with thin ROS 2 wrappers.

Everything that computes (models, losses, training, data, pre/post-processing, inference backends,
quantization, export, metrics) lives here and imports without rclpy. Only the
:mod:`edge_perception.ros` sub-package imports rclpy and message packages.
"""

__version__ = "0.1.0"
