"""Files that ship with the package (the trained demo model, the Fast DDS profile), wherever it is installed:
the ament share folder (colcon), the source tree (checkout or editable pip install) or pip's
`<sys.prefix>/share/siam_depth_ros` (pip install)."""
from __future__ import annotations

import sys
from pathlib import Path

#: The ament/pip package whose share folder holds the shipped files (`share/<package>/<folder>`).
PACKAGE_NAME = "siam_depth_ros"
#: File name of the shipped demo model under models/ (see models/README.md).
SHIPPED_CHECKPOINT = "siam_depth_small.pt"


def shipped_file(folder: str, name: str) -> Path | None:
    """`<folder>/<name>` of this package from the first installation that has it, or None."""
    candidates = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            candidates.append(Path(get_package_share_directory(PACKAGE_NAME)) / folder / name)
        except (PackageNotFoundError, OSError, ValueError):  # not installed the ament way / AMENT_PREFIX_PATH unset
            pass
    except ImportError:
        pass
    candidates.append(Path(__file__).resolve().parents[1] / folder / name)
    candidates.append(Path(sys.prefix) / "share" / PACKAGE_NAME / folder / name)
    return next((path for path in candidates if path.is_file()), None)


def shipped_checkpoint() -> Path | None:
    """The trained demo model `models/siam_depth_small.pt`, or None when this installation has none."""
    return shipped_file("models", SHIPPED_CHECKPOINT)
