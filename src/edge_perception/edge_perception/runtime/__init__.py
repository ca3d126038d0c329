"""ROS-free inference pipelines: preprocessing, backend call, postprocessing, per-stage timing."""
