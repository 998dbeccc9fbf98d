"""Packaging the ROS way: `colcon build` of the package into a fresh workspace gives the ament layout that
`ros2 run` / `ros2 launch` rely on, and the installed `depth_node` (with the installed config) serves depth."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy not installed (ROS extra)")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from ros_helpers import (  # noqa: E402
    REPO_ROOT,
    DepthNodeClient,
    NodeProcess,
    StampClock,
    configure_dds,
    image_message,
    unique_namespace,
)

from siam_depth_ros.conversions import image_to_numpy  # noqa: E402

pytestmark = pytest.mark.timeout(300)

PACKAGE = "siam_depth_ros"
#: What the package's setup.py reads or installs (everything else in the repo is not part of the package).
PACKAGE_FILES = ("package.xml", "setup.py", "setup.cfg", "resource", "siam_depth_core", "siam_depth_ros", "launch",
                 "config", "models")


@pytest.fixture(scope="module")
def colcon_install(tmp_path_factory) -> Path:
    """`colcon build` of a copy of the package in src/ of a temporary workspace; returns install/<package>."""
    colcon = shutil.which("colcon", path=str(Path(sys.executable).parent)) or shutil.which("colcon")
    if colcon is None:
        pytest.skip("colcon not installed (pip install colcon-core colcon-ros)")
    workspace = tmp_path_factory.mktemp("colcon_ws")
    source = workspace / "src" / PACKAGE
    source.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in PACKAGE_FILES:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        elif path.is_file():
            shutil.copy2(path, source / name)
    result = subprocess.run([colcon, "build", "--event-handlers", "console_direct+"], cwd=workspace,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, f"colcon build failed:\n{result.stdout}\n{result.stderr}"
    return workspace / "install" / PACKAGE


def installed_environment(prefix: Path) -> dict[str, str]:
    """What `source install/setup.bash` sets for this package: AMENT_PREFIX_PATH and PYTHONPATH."""
    environment = configure_dds()
    site_packages = next(prefix.glob("lib/python3*/site-packages"))
    environment["AMENT_PREFIX_PATH"] = os.pathsep.join(filter(None, [str(prefix), environment.get("AMENT_PREFIX_PATH")]))
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site_packages), environment.get("PYTHONPATH")]))
    return environment


def test_colcon_build_installs_the_ament_layout(colcon_install):
    share = colcon_install / "share" / PACKAGE
    assert (share / "package.xml").is_file()
    assert (share / "launch" / "depth.launch.py").is_file()
    for config in ("depth.yaml", "depth.rviz", "fastdds_shm.xml"):
        assert (share / "config" / config).is_file(), config
    assert (colcon_install / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE).is_file()
    depth_node = colcon_install / "lib" / PACKAGE / "depth_node"
    assert depth_node.is_file() and os.access(depth_node, os.X_OK)


def test_installed_package_is_what_runs_and_finds_its_share_directory(colcon_install):
    probe = ("import siam_depth_ros.node as node; from ament_index_python.packages import get_package_share_directory;"
             f" print(node.__file__); print(get_package_share_directory('{PACKAGE}'))")
    result = subprocess.run([sys.executable, "-c", probe], env=installed_environment(colcon_install), cwd=colcon_install,
                            capture_output=True, text=True, timeout=120, check=True)
    module_file, share_dir = result.stdout.split()
    assert Path(module_file).is_relative_to(colcon_install)
    assert Path(share_dir) == colcon_install / "share" / PACKAGE


def test_installed_depth_node_with_installed_config_publishes_depth(colcon_install, tmp_path):
    environment = installed_environment(colcon_install)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("colcon_package_test", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    namespace = unique_namespace() + "_colcon"
    command = [str(colcon_install / "lib" / PACKAGE / "depth_node"), "--ros-args",
               "--params-file", str(colcon_install / "share" / PACKAGE / "config" / "depth.yaml"),
               "-r", f"__ns:={namespace}", "-p", "network_height:=64", "-p", "network_width:=192"]
    try:
        with NodeProcess(command, tmp_path / "depth_node.log", env=environment, stop_timeout=30.0) as process:
            process.wait_for_log(r"siam_depth\]: ready:", timeout=120)
            client = DepthNodeClient(node, executor, namespace, outputs=["depth"])
            client.wait_until_connected()
            clock = StampClock(1_600_000_000 * 10**9)
            image = np.random.default_rng(0).integers(0, 256, (96, 320, 3), dtype=np.uint8)
            depth_msg = client.send_first(lambda: (image_message(image, clock.next()), None))["depth"]
            assert (depth_msg.height, depth_msg.width, depth_msg.encoding) == (96, 320, "32FC1")
            assert np.isfinite(image_to_numpy(depth_msg)).mean() > 0.9
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    assert process.process.returncode == 0, process.log()
