"""ROS 2 nodes of carla_bridge (scenario publisher, recorder, closed-loop evaluator)."""
