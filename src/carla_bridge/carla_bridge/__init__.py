"""carla_bridge: labelled driving data from CARLA or a procedural generator (ROS-free core).

Only :mod:`carla_bridge.ros` imports rclpy and message packages.
"""

__version__ = "0.1.0"
