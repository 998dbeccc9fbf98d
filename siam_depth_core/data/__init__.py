"""Data: KITTI raw drives and odometry sequences, rosbag2 and stereo-folder sources, calibration, LiDAR ground
truth, split lists, clip sampling, augmentation, Depth Hints, synthetic scenes. Used by training and evaluation
(and by export for calibration frames); may import only the shared top-level modules."""
