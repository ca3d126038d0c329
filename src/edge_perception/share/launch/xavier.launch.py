"""Jetson Xavier: lane + detection lifecycle nodes (TensorRT) and their lifecycle manager.

    ros2 launch edge_perception xavier.launch.py camera_topic:=/front/image_raw
    ros2 launch edge_perception xavier.launch.py backend:=onnxruntime precision:=fp32 \
        enable_detection_node:=false use_sim_time:=true

Nodes, parameters and launch arguments (camera_topic, backend, precision, use_sim_time,
namespace, enable_<node>) come from config/xavier.yaml; the same file drives
``edge-perception run xavier.yaml`` where ros2 launch is not installed.

When the lifecycle manager exits (bring-up failed with stop_on_failure, e.g. a missing model or
no TensorRT), the launch shuts down with it (OnProcessExit -> Shutdown, in launch_common).
"""

from edge_perception.ros.launch_common import generate_launch_description as _generate


def generate_launch_description():
    return _generate("xavier.yaml")
