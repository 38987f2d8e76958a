"""A materialization in its own process, for the crash-consistency tests: ``python tests/crash_child.py
ARGS_JSON``.

ARGS_JSON: ``{"root": data root (local path or fsspec URL), "cache": local working copy (fsspec roots),
"storage_options": {...}, "instance": DAGSTER_HOME-like folder, "groups": [asset groups],
"kill": "module:attr.path@N" or "module:attr.path@N~text" or null}``.

``kill`` wraps the named function so that its N-th call SIGKILLs this process before doing anything
(no Python cleanup, no ``finally``: what a power cut or the OOM killer does). With ``~text`` only the
calls whose arguments' ``repr`` contains ``text`` count (``os:replace@1~part-00001.count``: the rename
that puts that file in place), so a kill point stays where it is when other calls come and go. Hooks
are installed before the platform's modules are imported, so names imported with ``from x import f``
see the wrapper.
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import signal
import sys
from pathlib import Path


def install_kill(spec: str) -> None:
    target, when = spec.split("@", 1)
    nth, _, text = when.partition("~")
    module_name, attr_path = target.split(":")
    owner = importlib.import_module(module_name)
    *parents, name = attr_path.split(".")
    for part in parents:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    calls = itertools.count(1)
    n = int(nth)

    def killer(*args, **kwargs):
        if (not text or text in repr((args, kwargs))) and next(calls) == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    setattr(owner, name, killer)


def main(args: dict) -> int:
    if args.get("kill"):
        install_kill(args["kill"])
    import dagster as dg

    from vila_assets.definitions import build_definitions
    from vila_assets.demo import run_graph
    from vila_assets.profiles import WorldInfo, data_root_at, sample_world

    root = data_root_at(args["root"], args.get("cache"), args.get("storage_options"))
    world_info = WorldInfo(**args["world"])
    profile = sample_world(world_info, root)
    defs = build_definitions(profile)
    graph = defs.resolve_asset_graph()
    selection = [k for k in graph.materializable_asset_keys if graph.get(k).group_name in args["groups"]]
    Path(args["instance"]).mkdir(parents=True, exist_ok=True)
    with dg.DagsterInstance.local_temp(args["instance"]) as instance:
        outcomes = run_graph(defs, profile, instance, selection)
    failed = [o.run.name for o in outcomes if not o.success]
    print(json.dumps({"failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
