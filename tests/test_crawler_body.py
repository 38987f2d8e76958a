"""Bodies capped on their decoded size; memory budgets shared by crawler processes."""

from __future__ import annotations

import asyncio
import gzip
import multiprocessing
import os
import subprocess
import sys
import threading
import time
import zlib

import pytest

from vila_assets.core.crawl.body import BadEncoding, BodyTooLarge, BoundedBody
from vila_assets.core.crawl.budget import Budget, Cancelled, Reservation
from vila_assets.sample_world import hostile_images as hostile

PAYLOAD = os.urandom(300_000)


@pytest.mark.parametrize("coding, data", [
    (None, PAYLOAD),
    ("identity", PAYLOAD),
    ("gzip", gzip.compress(PAYLOAD)),
    ("x-gzip", gzip.compress(PAYLOAD[:1000]) + gzip.compress(PAYLOAD[1000:])),  # concatenated members
    ("deflate", zlib.compress(PAYLOAD)),
    ("deflate", zlib.compress(PAYLOAD)[2:-4]),  # raw deflate sent as "deflate"
    ("gzip, gzip", gzip.compress(gzip.compress(PAYLOAD))),
    ("GZIP , identity", gzip.compress(PAYLOAD)),
])
@pytest.mark.parametrize("piece", [7_000, 10**7])
def test_bodies_decode_exactly_whatever_the_chunking(coding, data, piece):
    body = BoundedBody(coding, 1 << 20)
    for i in range(0, len(data), piece):
        body.feed(data[i : i + piece])
    assert body.result() == PAYLOAD


def test_a_body_fed_byte_by_byte_decodes_the_same():
    text = b"a small compressible body " * 200
    body = BoundedBody("gzip", 1 << 20)
    for byte in gzip.compress(text):
        body.feed(bytes([byte]))
    assert body.result() == text


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate"])
def test_a_1000x_bomb_stops_at_the_decoded_cap_without_inflating(coding):
    """1 GiB behind ~1 MB of wire: stopped as soon as the DECODED size passes the cap, holding no more
    than the cap (measured as this process's peak RSS growth, in a fresh interpreter)."""
    script = (
        "import resource, sys\n"
        "from vila_assets.core.crawl.body import BoundedBody, BodyTooLarge\n"
        "from vila_assets.sample_world.hostile_images import compression_bomb\n"
        "bomb = compression_bomb(sys.argv[1])\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "body = BoundedBody('deflate' if 'deflate' in sys.argv[1] else 'gzip', 20 << 20)\n"
        "try:\n"
        "    body.feed(bomb)\n"
        "except BodyTooLarge as exc:\n"
        "    print(exc)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)\n"
    )
    run = subprocess.run([sys.executable, "-c", script, coding], capture_output=True, text=True, timeout=120, check=True)
    reason, grown = run.stdout.strip().splitlines()
    assert reason == f"too large: decoded body > {20 << 20} bytes"
    assert int(grown) < 3 * (20 << 20)  # the kept pieces (<= cap) and one output step, not 1 GiB


def test_endless_compressed_streams_and_nested_codings_stop_at_the_cap():
    body = BoundedBody("gzip", 5 << 20)
    with pytest.raises(BodyTooLarge, match="decoded body"):
        for piece in hostile.endless_gzip():
            body.feed(piece)
    nested = gzip.compress(hostile.compression_bomb("gzip", 64 << 20))
    with pytest.raises(BodyTooLarge, match="decoded body"):
        BoundedBody("gzip, gzip", 5 << 20).feed(nested)


def test_the_wire_size_is_capped_too():
    body = BoundedBody(None, 1000)
    body.feed(b"x" * 1000)
    with pytest.raises(BodyTooLarge, match="too large: body > 1000 bytes"):
        body.feed(b"x")


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "gzip;q=1", "exi"])
def test_encodings_we_cannot_bound_are_refused_by_name(coding):
    with pytest.raises(BadEncoding, match=f"unsupported content-encoding: {coding[:20]}"):
        BoundedBody(coding, 100)


def test_corrupt_streams_are_refused():
    with pytest.raises(BadEncoding, match="corrupt gzip body"):
        BoundedBody("gzip", 100).feed(b"\x1f\x8b not gzip at all")


def test_budget_takes_gives_and_clamps():
    budget = Budget(100)
    assert budget.try_take(60) and not budget.try_take(50) and budget.try_take(40)
    budget.give(100)
    assert budget.used == 0
    assert budget.try_take(10**9) and budget.used == 100  # larger than the budget: clamped, runs alone
    assert not budget.try_take(1)
    budget.give(10**9)
    assert budget.used == 0


def test_reservation_waits_for_room_and_shrinks():
    async def scenario() -> list[str]:
        budget, events = Budget(100), []
        first, second = Reservation(budget), Reservation(budget)
        await first.resize(80)

        async def waiter() -> None:
            await second.resize(50)
            events.append("second in")

        task = asyncio.create_task(waiter())
        await asyncio.sleep(0.05)
        events.append("first shrinks")
        await first.resize(40)  # 40 + 50 fit now
        await task
        first.release(), second.release()
        assert budget.used == 0
        return events

    assert asyncio.run(scenario()) == ["first shrinks", "second in"]


def test_a_blocked_worker_thread_is_released_by_cancellation():
    budget, cancelled, outcome = Budget(10), threading.Event(), []
    budget.try_take(10)

    def worker() -> None:
        try:
            budget.take_blocking(5, cancelled)
            outcome.append("took")
        except Cancelled:
            outcome.append("cancelled")

    thread = threading.Thread(target=worker)
    thread.start()
    time.sleep(0.1)
    cancelled.set()
    thread.join(5)
    assert outcome == ["cancelled"]


def _hold_in_child(budget: Budget, took: multiprocessing.Event, release: multiprocessing.Event) -> None:
    budget.take_blocking(70)
    took.set()
    release.wait(10)
    budget.give(70)


def test_the_budget_is_shared_between_processes():
    ctx = multiprocessing.get_context("spawn")
    budget, took, release = Budget(100, ctx), ctx.Event(), ctx.Event()  # a ctx: shared
    child = ctx.Process(target=_hold_in_child, args=(budget, took, release))
    child.start()
    try:
        assert took.wait(30)
        assert budget.used == 70 and not budget.try_take(50)
        release.set()
        child.join(10)
        assert budget.used == 0 and budget.try_take(50)
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
