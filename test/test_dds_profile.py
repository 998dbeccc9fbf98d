"""Choosing the Fast DDS profile: the user's wins, else the shipped shared-memory profile, through the variable the
distro's Fast DDS reads (FASTDDS_DEFAULT_PROFILES_FILE; the old FASTRTPS_ name only for Fast DDS 2 distros)."""
from __future__ import annotations

from pathlib import Path

import pytest

from siam_depth_ros.dds_profile import (
    LEGACY_PROFILE_ENV_VAR,
    OPT_OUT_ENV_VAR,
    PROFILE_ENV_VAR,
    apply_default_profile,
    choose_profile,
    profile_env_vars,
    shipped_profile_path,
    uses_fast_dds,
)

REPO_PROFILE = Path(__file__).resolve().parents[1] / "config" / "fastdds_shm.xml"


@pytest.fixture
def user_profile(tmp_path: Path) -> Path:
    path = tmp_path / "my_profile.xml"
    path.write_text("<dds/>")
    return path


def test_shipped_profile_is_found_in_the_source_tree():
    path = shipped_profile_path()
    assert path is not None and path.name == "fastdds_shm.xml" and path.is_file()
    assert path.read_bytes() == REPO_PROFILE.read_bytes()


@pytest.mark.parametrize(("distro", "expected"), [
    (None, (PROFILE_ENV_VAR,)),  # the pip wheels of Kilted set no ROS_DISTRO
    ("", (PROFILE_ENV_VAR,)),
    ("kilted", (PROFILE_ENV_VAR,)),
    ("rolling", (PROFILE_ENV_VAR,)),
    ("jazzy", (PROFILE_ENV_VAR, LEGACY_PROFILE_ENV_VAR)),  # Fast DDS 2.14 reads only the old name
    ("Humble", (PROFILE_ENV_VAR, LEGACY_PROFILE_ENV_VAR)),
])
def test_legacy_variable_only_where_the_distro_needs_it(distro, expected):
    assert profile_env_vars(distro) == expected


def test_shipped_profile_when_the_user_has_set_none():
    choice = choose_profile({}, REPO_PROFILE)
    assert (choice.source, choice.path, choice.warning) == ("shipped", REPO_PROFILE, False)
    assert choice.variables == {PROFILE_ENV_VAR: str(REPO_PROFILE)}  # no deprecated name on Kilted
    assert "shipped shared-memory Fast DDS profile" in choice.message and str(REPO_PROFILE) in choice.message
    jazzy = choose_profile({"ROS_DISTRO": "jazzy"}, REPO_PROFILE)
    assert jazzy.variables == {PROFILE_ENV_VAR: str(REPO_PROFILE), LEGACY_PROFILE_ENV_VAR: str(REPO_PROFILE)}


@pytest.mark.parametrize("variable", [PROFILE_ENV_VAR, LEGACY_PROFILE_ENV_VAR])
def test_the_users_profile_wins(variable, user_profile: Path):
    choice = choose_profile({variable: str(user_profile)}, REPO_PROFILE)
    assert (choice.source, choice.path, choice.variables, choice.warning) == ("user", user_profile, {}, False)
    assert variable in choice.message and str(user_profile) in choice.message


def test_a_user_profile_that_does_not_exist_is_kept_with_a_warning(tmp_path: Path):
    choice = choose_profile({PROFILE_ENV_VAR: str(tmp_path / "typo.xml")}, REPO_PROFILE)
    assert choice.source == "user" and choice.variables == {} and choice.warning
    assert "file not found" in choice.message


@pytest.mark.parametrize("value", ["0", "false", "OFF", "no"])
def test_opt_out_keeps_the_built_in_transports(value):
    choice = choose_profile({OPT_OUT_ENV_VAR: value}, REPO_PROFILE)
    assert (choice.source, choice.variables, choice.warning) == ("none", {}, True)
    assert "built-in transports" in choice.message


def test_other_rmw_or_no_shipped_profile_sets_nothing():
    assert uses_fast_dds(None) and uses_fast_dds("rmw_fastrtps_dynamic_cpp") and not uses_fast_dds("rmw_zenoh_cpp")
    cyclone = choose_profile({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}, REPO_PROFILE)
    assert (cyclone.source, cyclone.variables) == ("none", {}) and "not Fast DDS" in cyclone.message
    dynamic = choose_profile({"RMW_IMPLEMENTATION": "rmw_fastrtps_dynamic_cpp"}, REPO_PROFILE)
    assert dynamic.source == "shipped"
    missing = choose_profile({}, None)
    assert (missing.source, missing.variables, missing.warning) == ("none", {}, True)
    assert "not found" in missing.message


def test_apply_sets_the_variables_in_the_given_environment(user_profile: Path):
    environment = {"ROS_DISTRO": "kilted"}
    choice = apply_default_profile(environment, shipped=REPO_PROFILE)
    assert choice.source == "shipped"
    assert environment == {"ROS_DISTRO": "kilted", PROFILE_ENV_VAR: str(REPO_PROFILE)}
    users = {PROFILE_ENV_VAR: str(user_profile)}
    apply_default_profile(users, shipped=REPO_PROFILE)
    assert users == {PROFILE_ENV_VAR: str(user_profile)}
