"""The sample world: builds every family's miniature source, then serves it on 127.0.0.1.

``with SampleWorld(directory) as world:`` starts the hostile image web, writes the sources (whose image
URLs point at it) into a hub directory and the image-root archives beside it, starts the archive host
serving those at the official URL paths (``archive_web``), trains (or reuses) the tiny CLIP model and publishes it as a hub
model repo, and starts the fake hub. ``world.profile(data_root)`` is the ``sample_world`` deployment
profile pointing every resource at it (``vila_assets.profiles``).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from vila_assets.sample_world.hub_server import FakeHub
from vila_assets.sample_world.sources import SCALES, SourceContext, builders

log = logging.getLogger(__name__)


class SampleWorld:
    def __init__(
        self,
        directory: str | Path,
        seed: int = 0,
        scale: str = "demo",
        clip: bool = True,
        families: list[str] | None = None,
        model_cache: str | Path | None = None,
    ):
        """``families`` limits which source modules are built (None: all); ``clip`` False skips the tiny
        CLIP model; ``model_cache`` shares one trained tiny model between worlds (tests)."""
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
        self.directory = Path(directory).resolve()
        self.seed, self.scale, self.clip = seed, scale, clip
        self.families = families
        self._model_cache = Path(model_cache) if model_cache else None
        self.image_web = None
        self.archive_web = None
        self.archive_base: str | None = None
        self.hub: FakeHub | None = None
        self.image_base: str | None = None
        self.endpoint: str | None = None
        self.ctx: SourceContext | None = None

    @property
    def hub_root(self) -> Path:
        return self.directory / "hub"

    @property
    def model_cache(self) -> Path:
        return self._model_cache or self.directory / "models"

    def _builders(self):
        mods = builders()
        if self.families is not None:
            names = {m.__name__.rsplit(".", 1)[-1]: m for m in mods}
            unknown = set(self.families) - set(names)
            if unknown:
                raise ValueError(f"unknown sample-world families {sorted(unknown)}; have {sorted(names)}")
            mods = [names[f] for f in sorted(self.families)]
        return mods

    def start(self) -> "SampleWorld":
        from vila_assets.sample_world.image_web import ImageWeb

        try:
            self.image_web = ImageWeb()
            self.image_base = self.image_web.start()
            shutil.rmtree(self.hub_root, ignore_errors=True)
            self.ctx = ctx = SourceContext(self.hub_root, self.image_base, self.seed, self.scale)
            for mod in self._builders():
                log.info("sample world: building %s", mod.__name__.rsplit(".", 1)[-1])
                mod.build(ctx)
            if self.clip:
                self._publish_tiny_clip()
            self._start_archive_web()
            self.hub = FakeHub(self.hub_root)
            self.endpoint = self.hub.start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_archive_web(self) -> None:
        from vila_assets.sample_world.archive_web import ARCHIVES_DIR, ArchiveWeb

        self.archive_web = ArchiveWeb(self.directory / ARCHIVES_DIR)
        self.archive_base = self.archive_web.start()
        # the first download of COCO's train2017.zip is cut mid-body: fetching it shows a resumed download
        self.archive_web.drop_once("/zips/train2017.zip")

    def _publish_tiny_clip(self) -> None:
        from vila_assets.sample_world.tiny_clip import TINY_CLIP_REPO, ensure_tiny_clip

        trained = ensure_tiny_clip(self.model_cache, seed=self.seed)
        dest = self.hub_root / "models" / TINY_CLIP_REPO
        dest.mkdir(parents=True, exist_ok=True)
        for f in trained.iterdir():
            if f.is_file():
                shutil.copy2(f, dest / f.name)

    def stop(self) -> None:
        if self.hub is not None:
            self.hub.stop()
            self.hub = None
        if self.image_web is not None:
            self.image_web.stop()
            self.image_web = None
        if self.archive_web is not None:
            self.archive_web.stop()
            self.archive_web = None

    def __enter__(self) -> "SampleWorld":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def info(self):
        """Where this world is: what the ``sample_world`` profile needs (also saved for ``dagster dev``)."""
        from vila_assets.profiles import WorldInfo

        if self.endpoint is None:
            raise RuntimeError("the sample world is not started")
        return WorldInfo(endpoint=self.endpoint, scale=self.scale, archive_base=self.archive_base)

    def profile(self, data_root):
        """The ``sample_world`` profile over ``data_root`` (a path, or a ``DataRoot`` resource)."""
        from vila_assets.profiles import data_root_at, sample_world

        root = data_root_at(str(data_root)) if isinstance(data_root, (str, Path)) else data_root
        return sample_world(self.info(), root)
