"""ROS 2 wrappers (rclpy lifecycle nodes, message conversion). The only place that imports rclpy."""
