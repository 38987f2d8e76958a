"""The UI in a real browser: Playwright drives Debian's Chromium (``/usr/bin/chromium``, headless; never
``playwright install``) against ``dagster dev`` on 127.0.0.1 serving the sample world, the way
``make dev PROFILE=sample_world`` serves it.

Before the server starts, the SFT mixture and everything upstream of it are materialized in-process into
the server's instance (the demo's planner over the mixture's ancestors), so the UI has a mixture whose
components can change. In the browser, each test then does what a person would: open the lineage of every
asset group, open the mixture's checks tab and the MMC4 partitions view, launch a partition-range
backfill from the launch dialog, and materialize an SFT component from its asset page, after which the
automation sensor must request the mixture. Run outcomes are read back over the same server's GraphQL.

Screenshots of every step go to a temporary directory, and to ``$VILA_TEST_ARTIFACTS/ui_browser/`` when
that is set (CI keeps them).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import dagster as dg
import pytest

from tests.dagster_runs import profile_for
from tests.ui_server import DagsterDev, chromium
from vila_assets.assets.sft_mixture.checks import CHECKS as SFT_CHECKS
from vila_assets.definitions import build_definitions
from vila_assets.demo import execute, plan_runs
from vila_assets.profiles import data_root_at

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
REPO_PATH = "__repository__@vila_assets"  # the code location's repository, as the UI's URLs name it
SFT = "sft_mixture"
COMPONENT = "sharegpt4v_filtered"  # an SFT component, re-materialized from the UI
SHARDED = "mmc4_annotations"  # dynamic partitions, registered by mmc4_shard_sensor when the daemon starts
AUTOMATION_SENSOR = "vila_automation"
UI_WAIT_MS = 120_000  # generous: the box may be busy; every wait is keyed on text the page shows
RUN_WAIT_S = 600.0

RUNS = """
query Runs($filter: RunsFilter) { runsOrError(filter: $filter, limit: 50) { ... on Runs { results {
  runId status creationTime assetSelection { path } tags { key value } } } } }"""
RUN_STATUS = "query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
GROUPS = "{ assetNodes { groupName assetKey { path } } }"
PARTITIONS = """
query Partitions($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode {
  partitionKeysByDimension { partitionKeys }
  assetPartitionStatuses { ... on DefaultPartitionStatuses { materializedPartitions } } } } }"""
BACKFILLS = """
{ partitionBackfillsOrError(limit: 5) { ... on PartitionBackfills { results { id status timestamp
  assetSelection { path }
  assetBackfillData { assetBackfillStatuses { ... on AssetPartitionsStatusCounts {
    numPartitionsTargeted numPartitionsMaterialized } } } } } } }"""
SENSOR_TICKS = """
{ sensorOrError(sensorSelector: {repositoryName: "__repository__", repositoryLocationName: "vila_assets",
  sensorName: "vila_automation"}) { ... on Sensor { sensorState { ticks(limit: 20) { status timestamp } } } } }"""
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


# --- the server and the browser --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    """Where screenshots go: ``$VILA_TEST_ARTIFACTS/ui_browser`` when set, else a temporary directory."""
    base = os.environ.get("VILA_TEST_ARTIFACTS")
    directory = Path(base) / "ui_browser" if base else tmp_path_factory.mktemp("ui-browser")
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


def prepare_instance(world, root: Path, home: Path) -> None:
    """``$DAGSTER_HOME`` with the project's instance settings, the mixture and its ancestors materialized."""
    home.mkdir(parents=True)
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    world.info().save(data_root_at(str(root)))  # how the sample_world profile of `dagster dev` finds the world
    profile = profile_for(world, root)
    defs = build_definitions(profile)
    graph = defs.resolve_asset_graph()
    selection = set(graph.get_ancestor_asset_keys(dg.AssetKey(SFT))) | {dg.AssetKey(SFT)}
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        for wave in plan_runs(defs, profile, instance, selection):
            for planned in wave:
                outcome = execute(defs, planned, instance)
                assert outcome.success, f"preparing the mixture: run {planned.name} failed"
    finally:
        instance.dispose()


@pytest.fixture(scope="module")
def dev(sample_world, tmp_path_factory):
    """``dagster dev`` over the repository's workspace, ``VILA_PROFILE=sample_world``, a fresh instance."""
    base = tmp_path_factory.mktemp("ui-dev")
    root, home = base / "data", base / "dagster_home"
    prepare_instance(sample_world, root, home)
    env = {"VILA_PROFILE": "sample_world", "VILA_DATA_ROOT": str(root)}
    with DagsterDev(home, REPO / "workspace.yaml", env=env,
                    daemons=("BACKFILL", "QUEUED_RUN_COORDINATOR", "SENSOR", "ASSET")) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(UI_WAIT_MS)
    yield context.new_page()
    context.close()


def shot(page, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"))


def wait_until(condition, what: str, timeout: float = RUN_WAIT_S, every: float = 2.0):
    """``condition()`` until it returns something truthy; its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what}: not after {timeout:.0f}s")


def run_status(dev: DagsterDev, run_id: str) -> str:
    return dev.gql(RUN_STATUS, id=run_id)["runOrError"]["status"]


def finished_status(dev: DagsterDev, run_id: str) -> str:
    return wait_until(lambda: (s := run_status(dev, run_id)) in FINISHED and s, f"run {run_id} to finish")


def runs_of(dev: DagsterDev, asset: str, **tags: str) -> list[dict]:
    flt = {"tags": [{"key": k, "value": v} for k, v in tags.items()]} if tags else {}
    runs = dev.gql(RUNS, filter=flt)["runsOrError"]["results"]
    return [r for r in runs if [asset] in [a["path"] for a in r["assetSelection"] or []]]


def materialized(dev: DagsterDev, asset: str) -> tuple[list[str], list[str]]:
    """(partition keys, materialized partition keys) of ``asset``."""
    node = dev.gql(PARTITIONS, path=[asset])["assetNodeOrError"]
    return node["partitionKeysByDimension"][0]["partitionKeys"], node["assetPartitionStatuses"]["materializedPartitions"]


def launched_run_id(page) -> str:
    """The run id in the "Launched run ..." toast's link."""
    link = page.locator("a[href^='/runs/']").filter(has_text="View").first
    link.wait_for()
    return re.fullmatch(r"/runs/([0-9a-f-]{36})", link.get_attribute("href")).group(1)


# --- the tests --------------------------------------------------------------------------------------------


def test_every_asset_group_shows_its_lineage(dev, page, artifacts):
    groups: dict[str, list[str]] = {}
    for node in dev.gql(GROUPS)["assetNodes"]:
        groups.setdefault(node["groupName"], []).append("/".join(node["assetKey"]["path"]))
    assert {"mmc4", "coyo", "vflan", "sft"} <= set(groups), sorted(groups)
    for group, assets in sorted(groups.items()):
        page.goto(f"{dev.url}/locations/{REPO_PATH}/asset-groups/{group}")
        page.get_by_role("tab", name="Lineage").or_(page.get_by_text("Lineage", exact=True)).first.wait_for()
        for asset in assets:  # every asset of the group is a node of its graph
            page.get_by_text(asset, exact=True).first.wait_for()
        shot(page, artifacts, f"lineage-{group}")


def test_checks_tab_shows_every_mixture_check_passed(dev, page, artifacts):
    page.goto(f"{dev.url}/assets/{SFT}?view=checks")
    page.get_by_text(f"Checks ({len(SFT_CHECKS)})").wait_for()
    for check in SFT_CHECKS:
        page.get_by_text(check.name, exact=True).first.wait_for()
    page.get_by_text("Passed", exact=True).first.wait_for()  # the selected check's latest evaluation
    assert page.get_by_text("Succeeded", exact=True).count() == len(SFT_CHECKS)
    shot(page, artifacts, "checks-sft_mixture")


def test_partitions_view_lists_the_shards_the_sensor_registered(dev, page, artifacts):
    keys = wait_until(lambda: materialized(dev, SHARDED)[0], "mmc4_shard_sensor registering the world's shards")
    page.goto(f"{dev.url}/assets/{SHARDED}?view=partitions")
    page.get_by_text(f"{len(keys)} Partitions Selected").wait_for()
    for key in keys:
        page.get_by_text(key, exact=True).first.wait_for()
    shot(page, artifacts, f"partitions-{SHARDED}")


def test_partition_range_backfill_launched_from_the_ui_completes(dev, page, artifacts):
    keys = wait_until(lambda: materialized(dev, SHARDED)[0], "mmc4_shard_sensor registering the world's shards")
    assert len(keys) >= 3, keys
    chosen = keys[:2]  # a range of two consecutive shards
    page.goto(f"{dev.url}/assets/{SHARDED}?view=partitions")
    page.locator("button").filter(has_text=re.compile(r"^Materialize…$")).first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Custom").click()
    for key in keys[len(chosen):]:  # the launch dialog starts from every partition: drop the others
        remove_partition_tag(dialog, key)
    dialog.get_by_text(f"{len(chosen)} partitions").wait_for()
    shot(page, artifacts, "backfill-dialog")
    started = time.time()
    dialog.get_by_role("button", name="Launch backfill").click()

    backfill = wait_until(lambda: next((b for b in dev.gql(BACKFILLS)["partitionBackfillsOrError"]["results"]
                                        if b["timestamp"] >= started - 1), None), "the backfill to be created", 120)
    assert [a["path"] for a in backfill["assetSelection"]] == [[SHARDED]]
    page.goto(f"{dev.url}/runs/b/{backfill['id']}")
    final = wait_until(lambda: next((b["status"] for b in dev.gql(BACKFILLS)["partitionBackfillsOrError"]["results"]
                                     if b["id"] == backfill["id"] and b["status"] != "REQUESTED"), None),
                       f"backfill {backfill['id']} to finish")
    page.reload()
    page.get_by_text("Completed", exact=False).first.wait_for()
    shot(page, artifacts, "backfill-completed")
    assert final == "COMPLETED_SUCCESS", final
    runs = runs_of(dev, SHARDED, **{"dagster/backfill": backfill["id"]})
    assert len(runs) == 1 and runs[0]["status"] == "SUCCESS", runs  # one ranged run (backfill policy)
    tags = {t["key"]: t["value"] for t in runs[0]["tags"]}
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (chosen[0], chosen[-1])
    assert sorted(materialized(dev, SHARDED)[1]) == chosen


def remove_partition_tag(dialog, key: str) -> None:
    """Click the close icon of partition ``key``'s tag in the launch dialog's partition selector."""
    dialog.locator(f'[data-tooltip="{key}"]').get_by_role("img", name="close").click()
    dialog.locator(f'[data-tooltip="{key}"]').wait_for(state="detached")


def test_a_component_materialized_from_the_ui_makes_the_sensor_request_the_mixture(dev, page, artifacts):
    by_sensor = {"dagster/sensor_name": AUTOMATION_SENSOR}
    # the sensor has evaluated the prepared graph (nothing to do) before anything changes
    wait_until(lambda: dev.gql(SENSOR_TICKS)["sensorOrError"]["sensorState"]["ticks"], "a first automation tick")
    before = {r["runId"] for r in runs_of(dev, SFT, **by_sensor)}

    page.goto(f"{dev.url}/assets/{COMPONENT}")
    page.locator("button").filter(has_text=re.compile(r"^Materialize$")).first.click()
    run_id = launched_run_id(page)
    page.goto(f"{dev.url}/runs/{run_id}")
    assert finished_status(dev, run_id) == "SUCCESS"
    page.get_by_text("Success", exact=True).first.wait_for()
    shot(page, artifacts, f"run-{COMPONENT}")

    requested = wait_until(lambda: [r for r in runs_of(dev, SFT, **by_sensor) if r["runId"] not in before],
                           "the automation sensor to request the mixture")
    assert len(requested) == 1, requested
    mixture_run = requested[0]
    assert {"key": "dagster/from_automation_condition", "value": "true"} in mixture_run["tags"]
    assert finished_status(dev, mixture_run["runId"]) == "SUCCESS"
    page.goto(f"{dev.url}/locations/{REPO_PATH}/sensors/{AUTOMATION_SENSOR}")
    page.get_by_text(re.compile(r"^[1-9]\d* materializations? requested$")).first.wait_for()  # the requesting tick
    shot(page, artifacts, "automation-sensor")
    page.goto(f"{dev.url}/runs/{mixture_run['runId']}")
    page.get_by_text("Success", exact=True).first.wait_for()
    shot(page, artifacts, "run-sft_mixture-requested-by-the-sensor")
