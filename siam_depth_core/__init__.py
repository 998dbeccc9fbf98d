"""siam_depth_core: the ROS-free core of siam_depth (model, losses, data, training, export, inference)."""

__version__ = "0.1.0"
