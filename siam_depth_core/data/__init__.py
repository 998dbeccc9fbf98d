"""KITTI raw data: calibration, images, Velodyne ground truth, split lists, clip sampling, augmentation."""
