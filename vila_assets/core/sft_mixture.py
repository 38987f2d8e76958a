"""The SFT mixture: what stage 3 trains on, as a manifest plus a VILA-style dataset registry.

Components (reference notes: stage 3 = LLaVA-1.5 mix665k, VFLAN, ShareGPT4V SFT):

| name | VILA type | data_path | media |
|---|---|---|---|
| ``llava_1_5_sft`` | torch | ``./playground/data/llava_v1_5_mix665k.json`` | ``./playground/data`` |
| ``sharegpt4v_sft`` | torch | ``./playground/data/sharegpt4v/sharegpt4v_mix738k_remove_sa.json`` | ``./playground/data`` |
| ``vflan`` | vflan | ``./playground/data/vlm-flan-clean-text1m-nosqa-sharded`` | (images inline, base64) |

Outputs (outside ``playground/``, which holds only VILA's own files):

- ``registry/datasets.yaml`` in VILA HEAD's registry style: ``{name: {_target_, data_path, media_dir?}}``.
  HEAD has no VFLAN class any more (``LazyVFlanDataset`` is v1/1.5 only), so that entry names the v1/1.5
  class; every entry also carries the v1 ``dataset_type`` in the manifest.
- ``registry/mixtures.yaml``: ``vflan_sharegpt4v_sft`` (the paper's ``3_sft.sh``) = vflan + sharegpt4v_sft,
  and ``llava_1_5_sft``. mix665k is not added to the first: sharegpt4v_sft already contains all of it but
  the detail-23k samples, so listing both would train on ~640K samples twice.
- ``sft_mixture.json``: per component its sample count (read the way the loader reads it), content hash and
  file layout, plus the mixtures' totals.

Data policies: the mixture is the same under ``vila`` and ``curated`` (VILA's ``3_sft.sh`` mixture over the
same registry paths), so this module declares no ``POLICY_DIFFERENCES``; what its components hold differs by
policy, and their families declare that. The manifest's hashes show which data a mixture was built over.

Content hashes: sha256 of the JSON file's bytes; for a shard directory, sha256 over the loader-ordered
lines ``<stem>\\t<count>\\t<sha256 of the .pkl>``.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from vila_assets.core.atomic import atomic_write_text
from vila_assets.core.llava_json import iter_json_array, sha256_file
from vila_assets.core.vila_format import REGISTRY, loader_shards, registry_path, validate_shard_dir, write_json

# registry name -> (HEAD _target_, the asset that publishes it)
COMPONENTS: dict[str, tuple[str, str]] = {
    "llava_1_5_sft": ("llava.data.LLaVADataset", "llava_mix665k"),
    "sharegpt4v_sft": ("llava.data.LLaVADataset", "sharegpt4v_filtered"),
    "vflan": ("llava.data.dataset.LazyVFlanDataset", "vflan_chunks"),
}
MIXTURES: dict[str, tuple[str, ...]] = {
    "vflan_sharegpt4v_sft": ("vflan", "sharegpt4v_sft"),
    "llava_1_5_sft": ("llava_1_5_sft",),
}


class MixtureError(RuntimeError):
    """A component is missing or unreadable the way VILA's loader reads it; names the path."""


@dataclass(frozen=True)
class Component:
    name: str
    dataset_type: str
    target: str
    asset: str
    data_path: str  # relative to the data root, as in VILA's registry ("./playground/data/...")
    media_dir: str | None
    samples: int
    files: int
    bytes: int
    sha256: str


def _json_component(name: str, root: Path) -> Component:
    entry = REGISTRY[name]
    path = registry_path(name, root)
    if not path.is_file():
        raise MixtureError(f"{name}: {path} does not exist")
    h = hashlib.sha256()
    samples = sum(1 for _ in iter_json_array(path, on_bytes=h.update))
    target, asset = COMPONENTS[name]
    return Component(name, entry.type, target, asset, entry.data_path, entry.image_path, samples, 1,
                     path.stat().st_size, h.hexdigest())


def _shard_component(name: str, root: Path) -> Component:
    entry = REGISTRY[name]
    path = registry_path(name, root)
    if not path.is_dir():
        raise MixtureError(f"{name}: {path} does not exist")
    problems = validate_shard_dir(path, check_lengths=False)
    if problems:
        raise MixtureError(f"{name}: {path} breaks the sharded-pickle contract: " + "; ".join(problems[:5]))
    shards = loader_shards(path)
    if not shards:
        raise MixtureError(f"{name}: {path} holds no shards")
    h = hashlib.sha256()
    size = 0
    for s in shards:
        h.update(f"{s.stem}\t{s.count}\t{sha256_file(s.pkl)}\n".encode())
        size += s.pkl.stat().st_size
    target, asset = COMPONENTS[name]
    return Component(name, entry.type, target, asset, entry.data_path, entry.image_path,
                     sum(s.count for s in shards), len(shards), size, h.hexdigest())


def read_components(root: str | Path) -> list[Component]:
    """Every SFT component as the loader would see it now; raises :class:`MixtureError` if one is unusable."""
    root = Path(root)
    return [
        _shard_component(name, root) if REGISTRY[name].type == "vflan" else _json_component(name, root)
        for name in COMPONENTS
    ]


def registry_yaml(components: list[Component]) -> str:
    datasets = {}
    for c in components:
        entry = {"_target_": c.target, "data_path": c.data_path}
        if c.media_dir:
            entry["media_dir"] = c.media_dir
        datasets[c.name] = entry
    return yaml.safe_dump(datasets, sort_keys=True, default_flow_style=False)


def mixtures_yaml() -> str:
    return yaml.safe_dump({k: list(v) for k, v in MIXTURES.items()}, sort_keys=True, default_flow_style=False)


def manifest(components: list[Component]) -> dict:
    by_name = {c.name: c for c in components}
    return {
        "components": [asdict(c) for c in components],
        "mixtures": {
            name: {"datasets": list(parts), "samples": sum(by_name[p].samples for p in parts)}
            for name, parts in MIXTURES.items()
        },
    }


@dataclass(frozen=True)
class MixtureOutputs:
    manifest: Path
    datasets_yaml: Path
    mixtures_yaml: Path


def write_mixture(components: list[Component], out_dir: str | Path) -> MixtureOutputs:
    """Write the manifest and registry files (deterministic bytes, each atomically)."""
    out = Path(out_dir)
    m = write_json(out / "sft_mixture.json", manifest(components))
    d = atomic_write_text(out / "registry" / "datasets.yaml", registry_yaml(components))
    x = atomic_write_text(out / "registry" / "mixtures.yaml", mixtures_yaml())
    return MixtureOutputs(m, d, x)
