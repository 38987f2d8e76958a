"""Dagster-free core: crawling, imaging, dedup, sampling and VILA formats. Nothing here imports dagster."""
