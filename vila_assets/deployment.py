"""How runs execute: the executor a deployment selects, and on Kubernetes what each step's pod asks for.

``definitions.py`` reads the ``VILA_EXECUTOR`` setting and passes it to :func:`executor_for`:

- ``multiprocess`` (default): Dagster's default executor, every step a process of the run (one machine;
  a run's config may still pick ``in_process``);
- ``in_process``: every step in the run's own process (small runs; one Python start-up per run);
- ``k8s``: dagster-k8s's ``k8s_job_executor``, every step its own Kubernetes Job.

On Kubernetes the pod of a step is shaped by what the asset graph already says about the step, in this one
place rather than as tags in every family: an asset in the ``gpu`` pool (CLIP scoring) gets an NVIDIA GPU,
lands on GPU nodes (node selector + toleration of their taint) and runs the CUDA image when one is named
(``VILA_GPU_IMAGE``); an asset that uses the ``crawler`` resource gets the CPUs and memory the crawler sizes
itself by (it reads the pod's CPU limit). Every other step gets :data:`DEFAULT_STEP`. The shapes reach the
executor as its ``per_step_k8s_config`` (keyed by op name), which dagster-k8s merges over the run's own
configuration and any ``dagster-k8s/config`` op tag.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import dagster as dg

EXECUTORS = ("multiprocess", "in_process", "k8s")
DEFAULT_EXECUTOR = "multiprocess"
GPU_POOL = "gpu"  # the concurrency pool of steps that need a GPU (also sized by `vila-assets instance-setup`)
GPU_RESOURCE = "nvidia.com/gpu"

# Dagster's own settings for backfills over thousands of shards, for every process that creates runs
# (webserver, daemon) or executes them (run and step workers); measured in bench/README.md ("Backfills at
# MMC4 scale") and set in deploy/helm/values.yaml. The first writes one "planned" event per asset and ranged
# run instead of one per shard; its cost: Dagster OSS then shows the shards of a failed ranged run as
# missing rather than failed (each shard's `health` metadata still says which failed). The second sends a
# run's per-shard materializations to Postgres in batches (SQLite ignores it).
SCALE_ENV = {"DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true", "DAGSTER_EVENT_BATCH_SIZE": "1000"}


@dataclass(frozen=True)
class StepShape:
    """What one kind of step asks Kubernetes for, in dagster-k8s's ``dagster-k8s/config`` form."""

    kind: str
    requests: Mapping[str, str]
    limits: Mapping[str, str]
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, str], ...] = ()

    def k8s_config(self, image: str | None = None) -> dict:
        container: dict = {"resources": {"requests": dict(self.requests), "limits": dict(self.limits)}}
        if image:
            container["image"] = image
        pod: dict = {}
        if self.node_selector:
            pod["node_selector"] = dict(self.node_selector)
        if self.tolerations:
            pod["tolerations"] = [dict(t) for t in self.tolerations]
        return {"container_config": container, "pod_spec_config": pod}


# Memory limits equal requests (no eviction surprises); CPU limits only where a step sizes itself by them.
DEFAULT_STEP = StepShape("default", requests={"cpu": "1", "memory": "4Gi"}, limits={"memory": "4Gi"})
# The crawler starts one process per CPU of its limit; its in-flight byte budgets stay under ~2 GiB.
CRAWL_STEP = StepShape("crawl", requests={"cpu": "8", "memory": "8Gi", "ephemeral-storage": "100Gi"},
                       limits={"cpu": "8", "memory": "8Gi"})
# One GPU per scoring step (the `gpu` pool admits as many steps as the pool's limit says); the CPUs feed
# the model (decode + preprocess threads). Node label and taint as the NVIDIA GPU operator sets them.
GPU_STEP = StepShape(
    "gpu",
    requests={"cpu": "8", "memory": "32Gi", GPU_RESOURCE: "1"},
    limits={"memory": "32Gi", GPU_RESOURCE: "1"},
    node_selector={"nvidia.com/gpu.present": "true"},
    tolerations=({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},),
)


def step_shape(asset: dg.AssetsDefinition) -> StepShape | None:
    """The shape an asset's step needs beyond :data:`DEFAULT_STEP`, read from its pool and resources."""
    if getattr(asset.node_def, "pool", None) == GPU_POOL:
        return GPU_STEP
    if "crawler" in asset.required_resource_keys:
        return CRAWL_STEP
    return None


def per_step_k8s_config(assets: Iterable, gpu_image: str | None = None) -> dict[str, dict]:
    """``op name -> dagster-k8s config`` for every step that needs more than the default shape."""
    out = {}
    for asset in assets:
        if not isinstance(asset, dg.AssetsDefinition) or not asset.is_executable:
            continue
        shape = step_shape(asset)
        if shape is not None:
            out[asset.node_def.name] = shape.k8s_config(gpu_image if shape is GPU_STEP else None)
    return out


def k8s_executor_config(assets: Iterable, gpu_image: str | None = None) -> dict:
    """The ``k8s_job_executor`` config: default shape for every step, the per-step shapes over it."""
    return {"step_k8s_config": DEFAULT_STEP.k8s_config(),
            "per_step_k8s_config": per_step_k8s_config(assets, gpu_image)}


def executor_for(name: str | None, assets: Iterable, gpu_image: str | None = None) -> dg.ExecutorDefinition | None:
    """The executor the ``VILA_EXECUTOR`` setting names; None is Dagster's default (``multiprocess``)."""
    name = name or DEFAULT_EXECUTOR
    if name == "multiprocess":
        return None
    if name == "in_process":
        return dg.in_process_executor
    if name == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor.configured(k8s_executor_config(assets, gpu_image), name="k8s")
    raise ValueError(f"unknown executor {name!r} (VILA_EXECUTOR); have {', '.join(EXECUTORS)}")
