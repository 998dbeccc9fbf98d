"""Which Fast DDS XML profile a process uses: the user's if set, else the package's shared-memory profile.

A KITTI image (1242x375 rgb8, 1.4 MB) and the node's depth outputs (1.9 MB) exceed Fast DDS's built-in
512 KiB shared-memory segment and fall back to fragmented UDP, where best-effort messages are mostly
lost. `config/fastdds_shm.xml` gives every participant a 64 MiB segment. The functions here decide, from
the environment alone (no rclpy, no launch), whether a process should point Fast DDS at that file and
through which variable; `apply_default_profile()` does it. Call it before `rclpy.init()`: Fast DDS reads
the variable once, when the process creates its first participant.

- The user's choice wins: a non-empty FASTDDS_DEFAULT_PROFILES_FILE (or the Fast DDS 2 name
  FASTRTPS_DEFAULT_PROFILES_FILE) is kept as it is.
- `SIAM_DEPTH_SHM_PROFILE=0` (or false/off/no) opts out: Fast DDS keeps its built-in transports.
- Another RMW than Fast DDS (`RMW_IMPLEMENTATION=rmw_cyclonedds_cpp`, ...) gets nothing.
- Fast DDS 3 (Kilted and newer) reads FASTDDS_DEFAULT_PROFILES_FILE and warns about the old name; Fast
  DDS 2 (Humble, Iron, Jazzy) reads only FASTRTPS_DEFAULT_PROFILES_FILE, so both are set there
  (`ROS_DISTRO` tells which; unset, as with the pip wheels of Kilted, means Fast DDS 3).
"""
from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

from siam_depth_core.shipped_files import shipped_file

PROFILE_FILE_NAME = "fastdds_shm.xml"
#: Read by Fast DDS 3 (ROS 2 Kilted and newer).
PROFILE_ENV_VAR = "FASTDDS_DEFAULT_PROFILES_FILE"
#: Read by Fast DDS 2 (ROS 2 Humble, Iron, Jazzy); deprecated (with a warning in every process) on Kilted.
LEGACY_PROFILE_ENV_VAR = "FASTRTPS_DEFAULT_PROFILES_FILE"
#: ROS 2 distributions whose Fast DDS is 2.x and needs the legacy variable.
FAST_DDS_2_DISTROS = frozenset({"foxy", "galactic", "humble", "iron", "jazzy"})
#: Set to 0/false/off/no to keep Fast DDS's built-in transports instead of the shipped profile.
OPT_OUT_ENV_VAR = "SIAM_DEPTH_SHM_PROFILE"
_OFF = frozenset({"0", "false", "off", "no"})


@dataclass(frozen=True)
class ProfileChoice:
    """The outcome of `choose_profile`.

    path: the XML profile Fast DDS will load (the user's or the shipped one), None for its built-in
    transports. source: "user", "shipped" or "none". variables: the environment variables to set (empty
    unless the shipped profile is chosen). message: one log line saying which profile is used and why.
    warning: True when the message should be logged as a warning (large messages are likely lost, or
    the user's file does not exist).
    """

    path: Path | None
    source: str
    variables: dict[str, str] = field(default_factory=dict)
    message: str = ""
    warning: bool = False


def profile_env_vars(ros_distro: str | None) -> tuple[str, ...]:
    """The variables to set for Fast DDS of `ros_distro` (e.g. "kilted", "jazzy"; None/"" = Fast DDS 3)."""
    if ros_distro and ros_distro.strip().lower() in FAST_DDS_2_DISTROS:
        return PROFILE_ENV_VAR, LEGACY_PROFILE_ENV_VAR
    return (PROFILE_ENV_VAR,)


def uses_fast_dds(rmw_implementation: str | None) -> bool:
    """True for an unset RMW_IMPLEMENTATION (Fast DDS is the default RMW) and for rmw_fastrtps_*."""
    return not rmw_implementation or rmw_implementation.strip().startswith("rmw_fastrtps")


def shipped_profile_path() -> Path | None:
    """`config/fastdds_shm.xml` of this package: the ament share directory (colcon install), the source tree
    (checkout or editable pip install), or `<sys.prefix>/share/siam_depth_ros/config` (pip install); None if
    none exists."""
    return shipped_file("config", PROFILE_FILE_NAME)


def choose_profile(environ: Mapping[str, str], shipped: Path | None) -> ProfileChoice:
    """Decide the Fast DDS profile of a process from its environment and the shipped profile's path."""
    rmw = environ.get("RMW_IMPLEMENTATION", "")
    if not uses_fast_dds(rmw):
        return ProfileChoice(None, "none", message=f"RMW_IMPLEMENTATION={rmw} is not Fast DDS: no Fast DDS "
                             "profile applied")
    for variable in (PROFILE_ENV_VAR, LEGACY_PROFILE_ENV_VAR):
        user_path = environ.get(variable, "").strip()
        if user_path:
            exists = Path(user_path).is_file()
            return ProfileChoice(Path(user_path), "user", warning=not exists, message=(
                f"using the Fast DDS profile set in {variable}: {user_path}"
                + ("" if exists else " (file not found: Fast DDS will fail to load it)")))
    if environ.get(OPT_OUT_ENV_VAR, "").strip().lower() in _OFF:
        return ProfileChoice(None, "none", warning=True, message=(
            f"{OPT_OUT_ENV_VAR}={environ[OPT_OUT_ENV_VAR]}: Fast DDS uses its built-in transports; images and "
            "clouds above 512 KiB go over fragmented UDP and best-effort ones are mostly lost"))
    if shipped is None:
        return ProfileChoice(None, "none", warning=True, message=(
            f"the shipped Fast DDS profile {PROFILE_FILE_NAME} was not found; Fast DDS uses its built-in "
            f"transports (set {PROFILE_ENV_VAR} to a shared-memory profile for large images)"))
    variables = {variable: str(shipped) for variable in profile_env_vars(environ.get("ROS_DISTRO"))}
    return ProfileChoice(shipped, "shipped", variables, message=(
        f"using the shipped shared-memory Fast DDS profile {shipped} ({PROFILE_ENV_VAR} was not set; set it "
        f"to use your own profile, or {OPT_OUT_ENV_VAR}=0 for none)"))


def apply_default_profile(environ: MutableMapping[str, str] | None = None,
                          shipped: Path | None = None) -> ProfileChoice:
    """`choose_profile` for `environ` (default: this process's os.environ) and set its variables there.

    shipped: the profile to use when the user has set none (default: `shipped_profile_path()`). Call it
    before `rclpy.init()`; the returned choice's message is for the process's log.
    """
    environ = os.environ if environ is None else environ
    choice = choose_profile(environ, shipped if shipped is not None else shipped_profile_path())
    environ.update(choice.variables)
    return choice
