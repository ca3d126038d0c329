"""ROS 2 wrappers (lifecycle nodes, message conversion): the only place that imports rclpy."""
