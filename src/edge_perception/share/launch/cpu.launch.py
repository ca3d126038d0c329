"""CPU: synthetic camera, lane + detection lifecycle nodes (ONNX Runtime), lifecycle manager.

    ros2 launch edge_perception cpu.launch.py
    ros2 launch edge_perception cpu.launch.py enable_scenario_publisher:=false \
        camera_topic:=/camera/image_raw

Nodes, parameters and launch arguments (camera_topic, backend, precision, use_sim_time,
namespace, enable_<node>, camera_source (scenario | dataset | bag), dataset_dir, bag, rate_hz)
come from config/cpu.yaml; the same file drives
``edge-perception run cpu.yaml`` on machines without ros2 launch.

When the lifecycle manager exits (bring-up failed with stop_on_failure, e.g. a missing model or
no TensorRT), the launch shuts down with it (OnProcessExit -> Shutdown, in launch_common).
"""

from edge_perception.ros.launch_common import generate_launch_description as _generate


def generate_launch_description():
    return _generate("cpu.yaml")
