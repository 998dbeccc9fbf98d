"""Packaging the ROS way: the README's `colcon build --packages-select siam_depth_ros && source install/setup.bash`,
run as it is in a fresh workspace with the colcon that `make install` installs, gives the ament layout that
`ros2 run` / `ros2 launch` rely on and an environment in which the installed `depth_node` (with the installed
config) serves depth."""
from __future__ import annotations

import os
import re
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
    StampClock,
    configure_dds,
    image_message,
    unique_namespace,
)

from siam_depth_ros.conversions import image_to_numpy  # noqa: E402
from siam_depth_ros.harness import DepthNodeProcess  # noqa: E402

pytestmark = pytest.mark.timeout(300)

PACKAGE = "siam_depth_ros"
#: The build command of the README's "Running the depth node" section, run verbatim by this test.
README_BUILD_COMMAND = f"colcon build --packages-select {PACKAGE} && source install/setup.bash"
#: What the package's setup.py reads or installs (everything else in the repo is not part of the package).
PACKAGE_FILES = ("package.xml", "setup.py", "setup.cfg", "resource", "siam_depth_core", "siam_depth_ros", "launch",
                 "config", "models")


def readme_build_commands() -> list[str]:
    """The `colcon build ...` lines of the README's shell blocks."""
    readme = (REPO_ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip().startswith("colcon build")]


def test_every_ros_interface_package_the_code_imports_is_declared():
    """package.xml (rosdep, colcon) and setup.py's ros extra (pip) must name every message/service package
    imported anywhere in the package (tf2_msgs has no pip wheel: the player skips /tf without it)."""
    import ast
    import xml.etree.ElementTree as ElementTree

    imported = set()
    for path in [*REPO_ROOT.glob("siam_depth_ros/*.py"), *REPO_ROOT.glob("siam_depth_core/**/*.py"),
                 *REPO_ROOT.glob("launch/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module else
                     [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            imported |= {name.split(".")[0] for name in names
                         if re.fullmatch(r"[a-z_]+_(msgs|srvs|interfaces)", name.split(".")[0])}
    assert {"lifecycle_msgs", "sensor_msgs", "std_srvs"} <= imported
    exec_depends = {element.text for element in ElementTree.parse(REPO_ROOT / "package.xml").getroot()
                    .iter("exec_depend")}
    assert imported <= exec_depends, sorted(imported - exec_depends)
    setup_source = (REPO_ROOT / "setup.py").read_text()
    ros_extra = set(re.findall(r'"(ros-kilted-[a-z-]+)"', setup_source))
    wheels = {f"ros-kilted-{name.replace('_', '-')}" for name in imported - {"tf2_msgs"}}
    assert wheels <= ros_extra, sorted(wheels - ros_extra)
    assert "opencv" in (REPO_ROOT / "package.xml").read_text() and '"opencv-python-headless' in setup_source


def test_readme_shows_the_command_this_test_runs():
    assert readme_build_commands() == [README_BUILD_COMMAND]


@pytest.fixture(scope="module")
def colcon_workspace(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The README's build command run by bash in a temporary workspace holding a copy of the package in src/;
    returns (install/<package>, the environment after `source install/setup.bash`)."""
    venv_bin = str(Path(sys.executable).parent)
    if shutil.which("colcon", path=venv_bin) is None and shutil.which("colcon") is None:
        pytest.skip("colcon not installed (pip install -e '.[dev]' installs colcon and the extensions the README's "
                    "command needs)")
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not installed (the README's command sources install/setup.bash)")
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
    environment = configure_dds()
    environment["PATH"] = os.pathsep.join([venv_bin, environment.get("PATH", "")])  # the venv's colcon first
    sourced = workspace / "sourced.env"
    result = subprocess.run([bash, "-c", f"{README_BUILD_COMMAND} && env -0 > {sourced}"], cwd=workspace,
                            env=environment, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, (
        f"the README's `{README_BUILD_COMMAND}` failed (colcon-package-selection gives --packages-select, "
        f"colcon-bash gives install/setup.bash; both are in the dev extra):\n{result.stdout}\n{result.stderr}")
    variables = dict(entry.split("=", 1) for entry in sourced.read_text().split("\0") if "=" in entry)
    return workspace / "install" / PACKAGE, variables


@pytest.fixture(scope="module")
def colcon_install(colcon_workspace) -> Path:
    return colcon_workspace[0]


@pytest.fixture(scope="module")
def installed_environment(colcon_workspace) -> dict[str, str]:
    """What `source install/setup.bash` left in the shell (measured, not assumed)."""
    return colcon_workspace[1]


def test_sourcing_the_setup_script_puts_the_package_on_the_paths(colcon_install, installed_environment):
    site_packages = next(colcon_install.glob("lib/python3*/site-packages"))
    assert str(colcon_install) in installed_environment["AMENT_PREFIX_PATH"].split(os.pathsep)
    assert str(site_packages) in installed_environment["PYTHONPATH"].split(os.pathsep)
    assert installed_environment["COLCON_PREFIX_PATH"].split(os.pathsep)[0] == str(colcon_install.parent)


def test_colcon_build_installs_the_ament_layout(colcon_install):
    share = colcon_install / "share" / PACKAGE
    assert (share / "package.xml").is_file()
    assert (share / "launch" / "depth.launch.py").is_file()
    for config in ("depth.yaml", "depth.rviz", "fastdds_shm.xml"):
        assert (share / "config" / config).is_file(), config
    assert (colcon_install / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE).is_file()
    depth_node = colcon_install / "lib" / PACKAGE / "depth_node"
    assert depth_node.is_file() and os.access(depth_node, os.X_OK)


def test_installed_package_is_what_runs_and_finds_its_share_directory(colcon_install, installed_environment):
    probe = ("import siam_depth_ros.node as node; from ament_index_python.packages import get_package_share_directory;"
             f" print(node.__file__); print(get_package_share_directory('{PACKAGE}'))")
    result = subprocess.run([sys.executable, "-c", probe], env=installed_environment, cwd=colcon_install,
                            capture_output=True, text=True, timeout=120, check=True)
    module_file, share_dir = result.stdout.split()
    assert Path(module_file).is_relative_to(colcon_install)
    assert Path(share_dir) == colcon_install / "share" / PACKAGE


def test_installed_depth_node_with_installed_config_publishes_depth(colcon_install, installed_environment, tmp_path):
    environment = installed_environment
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("colcon_package_test", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    namespace = unique_namespace() + "_colcon"
    depth_node = colcon_install / "lib" / PACKAGE / "depth_node"
    installed_config = colcon_install / "share" / PACKAGE / "config" / "depth.yaml"
    try:
        with DepthNodeProcess(tmp_path / "depth_node.log", namespace, {"network_height": 64, "network_width": 192},
                              command=[str(depth_node)], params_file=installed_config, env=environment,
                              stop_timeout=30.0) as process:
            process.wait_until_ready(node, timeout_s=120)  # ~/reset exists: the installed model is loaded
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
