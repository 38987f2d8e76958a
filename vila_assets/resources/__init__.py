"""Dagster resources: configuration, clients and devices. Thin wrappers over ``vila_assets.core``."""
