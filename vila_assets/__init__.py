"""vila_assets: VILA's training-data preparation as Dagster software-defined assets."""

__version__ = "0.1.0"
