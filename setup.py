"""siam_depth: ament_python package (ROS 2) that is also pip-installable."""
from glob import glob

from setuptools import find_packages, setup

package_name = "siam_depth_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=["siam_depth_core", "siam_depth_core.*", "siam_depth_ros", "siam_depth_ros.*"]),
    # py.typed (PEP 561): type checkers of code that imports siam_depth_core read its annotations.
    package_data={"siam_depth_core": ["py.typed"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*")),
        ("share/" + package_name + "/models", glob("models/*.pt") + glob("models/*.md")),
        # the shipped training configs, so that a user's config can name one as its `base` (training/config.py)
        ("share/" + package_name + "/training/configs", glob("training/configs/*.yaml")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "setuptools",
        "numpy",
        "torch>=2.4",
        "opencv-python-headless",  # image resizing, colour maps, encoding CompressedImage (JPEG/PNG)
        # decoding CompressedImage JPEG input with libjpeg-turbo: warnings (corrupt data) as errors, nothing on stderr,
        # reduced-scale decoding of big frames (PNG input: Pillow, above)
        "simplejpeg",
        "scipy",
        "pillow",
        "pyyaml",
        "tqdm",
    ],
    extras_require={
        # rclpy and the message packages come from a ROS 2 install (apt) or the ros-kilted-* wheels.
        "ros": [
            "ros-kilted-rclpy",
            "ros-kilted-rmw-fastrtps-cpp",
            "ros-kilted-sensor-msgs",
            "ros-kilted-std-msgs",
            "ros-kilted-std-srvs",
            "ros-kilted-stereo-msgs",
            "ros-kilted-geometry-msgs",
            "ros-kilted-builtin-interfaces",
            "ros-kilted-rcl-interfaces",
            "ros-kilted-diagnostic-msgs",
            "ros-kilted-lifecycle-msgs",  # the managed (lifecycle) mode: depth_node --lifecycle
            "ros-kilted-visualization-msgs",
            "ros-kilted-rosgraph-msgs",
            "ros-kilted-ament-index-python",
            "rosbags",
        ],
        "onnx": ["onnx>=1.15", "onnxruntime>=1.17"],
        "trt": ["tensorrt>=10"],
        # the openvino backend: exported ONNX on x86/ARM CPUs, bf16 and int8 units (backends/openvino_backend.py)
        "openvino": ["openvino>=2024.0"],
        "train": ["tensorboard", "rosbags"],  # rosbags: training from a stereo rig's rosbag2
        # colcon-package-selection (--packages-select) and colcon-bash (install/setup.bash): the README's
        # `colcon build --packages-select siam_depth_ros && source install/setup.bash` needs both.
        "dev": ["pytest", "pytest-timeout", "ruff", "hypothesis", "scikit-image", "colcon-core", "colcon-ros",
                "colcon-package-selection", "colcon-bash", "tensorrt-rtx",
                # `make lint` type-checks siam_depth_core ([mypy] in setup.cfg) with these stubs.
                "mypy", "types-PyYAML", "types-tqdm", "scipy-stubs"],
    },
    zip_safe=True,
    maintainer="siam_depth developers",
    maintainer_email="siam-depth@example.com",
    description="Real-time monocular metric depth for vehicles: Siamese ConvLSTM U-Net trained from stereo video.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "depth_node = siam_depth_ros.node:main",
            "siam-depth-train = siam_depth_core.training.train:main",
            "siam-depth-eval = siam_depth_core.evaluation.evaluate:main",
            "siam-depth-export = siam_depth_core.runtime.export:main",
            "siam-depth-predict = siam_depth_core.runtime.predict:main",
            "siam-depth-kitti2bag = siam_depth_ros.kitti2bag:main",
            "siam-depth-play = siam_depth_ros.player:main",
        ],
    },
)
