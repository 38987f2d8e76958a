"""Checks of the SFT mixture (convention: ``vila_assets.assets._checks``)."""

from vila_assets.assets._checks import Check

COMPONENTS_CURRENT = Check(
    "components_current", "the manifest's counts and hashes match the components on disk, read back after writing",
    blocking=True)
REGISTRY_PATHS_EXIST = Check(
    "registry_paths_exist", "every registry data_path / media_dir exists under the data root")

CHECKS = (COMPONENTS_CURRENT, REGISTRY_PATHS_EXIST)
