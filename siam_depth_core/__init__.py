"""siam_depth_core: the ROS-free core of siam_depth, one sub-package per concern.

Where the vehicle's code ends and the workstation's begins (imports point down this list only):

    training/     workstation: trainer, losses, warps, validation, config      -> evaluation, runtime, network, data
    evaluation/   workstation: Eigen / KITTI 2015 metrics, controls, reports    -> runtime, network, data
    runtime/      vehicle: DepthEstimator, backends, export, quantise, predict  -> network, data (never training)
    network/      both: Table 1 net, refinement, pose net, checkpoint files     -> shared modules only
    data/         both: KITTI / odometry / rosbag2 / folder sources, LiDAR GT  -> shared modules only
    shared modules at the top: geometry, photometric, warp, visualize, cli, errors, interrupt, shipped_files
                  (they import no sub-package)
"""

__version__ = "0.1.0"
