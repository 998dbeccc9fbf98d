"""siam_depth_ros: the ROS 2 layer (node, message <-> numpy conversions, bag tools)."""
