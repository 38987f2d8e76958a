"""The fault web: every way a host fails, driven through the crawler CLI, with asserted outcomes.

One crawl (two processes) covers timeouts, slow drips, stalls, resets mid-body, 429 with every kind
of Retry-After, 5xx bursts, wrong Content-Lengths, redirect loops and chains, DNS failures, refused
connections, TLS errors (a test CA trusted through SSL_CERT_FILE; self-signed, expired and wrong-host
certificates; TLS against a plain-HTTP port) and bodies in encodings. For every URL: exactly one row
with the expected status and reason, as many attempts as the server saw requests, all within the
retry deadline; afterwards no crawler process is left, also when the crawl is killed.
"""

from __future__ import annotations

import json
import socket

import pyarrow.parquet as pq
import pytest

from crawl_tree import run_crawl_cli
from test_crawler_bounds import BOUND
from vila_assets.core.crawl import SAMPLE_STATUSES, CrawlConfig, crawl
from vila_assets.sample_world.image_web import ImageWeb, fault_url
from vila_assets.sample_world.tls import TestPki

TIMEOUT, RETRIES, BACKOFF_MAX = 2.0, 2, 1.0
# The longest any URL may take: every attempt times out and every wait is the longest backoff.
DEADLINE = (RETRIES + 1) * TIMEOUT + RETRIES * BACKOFF_MAX
CLI_FLAGS = ["--allow-network", "127.0.0.0/8", "--timeout", str(TIMEOUT), "--retries", str(RETRIES),
             "--backoff-base", "0.05", "--backoff-max", str(BACKOFF_MAX), "--processes", "2", "--quiet"]
ALL = RETRIES + 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cases(web: str, tls: dict[str, str], alone: str) -> list[tuple[str, str, str, int]]:
    """(url, status, error, attempts); ``web`` is the plain image web, ``tls`` the https ones by kind,
    ``alone`` a plain web for the one fault that spoils a kept-alive connection for whoever is next."""
    photo = "photo/red/circle/1/640x480.jpg"
    after = f" after {ALL} attempts"
    return [
        # timeouts: before the headers, after the headers, and a body dripping slower than the deadline
        (fault_url(web, "slow", "t-slow", 5), "failed_download", "timeout" + after, ALL),
        (f"{web}/stall/t-stall.jpg", "failed_download", "timeout" + after, ALL),
        (fault_url(web, "drip", "t-drip", 5), "failed_download", "timeout" + after, ALL),
        # resets mid-body: once (then fine), always
        (f"{web}/reset/1/t-reset1.jpg", "ok", None, 2),
        (f"{web}/reset/9/t-reset9.jpg", "failed_download", "truncated body" + after, ALL),
        # 429: Retry-After in seconds, as an HTTP date, far beyond backoff_max (capped), and for ever
        (fault_url(web, "ratelimit", "t-429", 2), "ok", None, 3),
        (f"{web}/ratelimit-date/1/t-429d.jpg", "ok", None, 2),
        (f"{web}/ratelimit-long/1/t-429l.jpg", "ok", None, 2),
        (fault_url(web, "ratelimit", "t-429x", 9), "failed_download", "http 429" + after, ALL),
        # 5xx bursts shorter and longer than the retries; a permanent error is not retried
        (f"{web}/burst/2/502/t-502.jpg", "ok", None, 3),
        (f"{web}/burst/1/504/t-504.jpg", "ok", None, 2),
        (f"{web}/burst/9/503/t-503.jpg", "failed_download", "http 503" + after, ALL),
        (fault_url(web, "status", "t-404", 404), "failed_download", "http 404", 1),
        # wrong Content-Length: longer than the body (truncated), shorter (the image is cut)
        (fault_url(web, "truncated", "t-trunc"), "failed_download", "truncated body" + after, ALL),
        (f"{alone}/short-length/t-short.jpg", "failed_decode", "corrupt or truncated jpeg: OSError", 1),
        # redirects: a loop, a chain too long, a chain that ends well
        (fault_url(web, "loop", "t-loop"), "failed_download", "redirect loop after 2 hops", 1),
        (fault_url(web, "redirect", photo, 9), "failed_download", "too many redirects (> 5)", 1),
        (fault_url(web, "redirect", photo, 2), "ok", None, 1),
        # DNS and connections
        ("http://nonexistent.invalid/x.jpg", "failed_download", "dns: cannot resolve nonexistent.invalid", 1),
        (f"http://127.0.0.1:{_closed_port()}/x.jpg", "failed_download", "connection error" + after, ALL),
        # TLS
        (f"{tls['valid']}/{photo}", "ok", None, 1),
        (f"{tls['self-signed']}/{photo}", "failed_download", "tls: certificate verify failed (self-signed certificate)", 1),
        (f"{tls['expired']}/{photo}", "failed_download", "tls: certificate verify failed (certificate has expired)", 1),
        (f"{tls['wrong-host']}/{photo}", "failed_download",
         "tls: certificate verify failed (IP address mismatch, certificate is not valid for '127.0.0.1'.)", 1),
        (web.replace("http://", "https://") + f"/{photo}", "failed_download", "tls: handshake failed", 1),
        # encodings and bodies
        (f"{web}/gzip/photo/t-gz.jpg", "ok", None, 1),
        (f"{web}/br/t-br.jpg", "failed_download", "unsupported content-encoding: br", 1),
        (f"{web}/empty/t-empty.jpg", "failed_decode", "empty body", 1),
    ]


@pytest.fixture(scope="module")
def faulted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    pki = TestPki(tmp / "pki")
    webs = {"plain": ImageWeb(), "alone": ImageWeb(), **{kind: ImageWeb(tls=pki.server_context(kind))
                                                         for kind in ("valid", "self-signed", "expired", "wrong-host")}}
    try:
        for web in webs.values():
            web.start()
        plain = webs["plain"]
        cases = _cases(plain.base_url, {kind: web.base_url for kind, web in webs.items()}, webs["alone"].base_url)
        for web in webs.values():
            web.warm(url for url, *_ in cases)
        src = tmp / "urls.jsonl"
        src.write_text("".join(json.dumps({"url": url}) + "\n" for url, *_ in cases))
        run = run_crawl_cli([str(src), str(tmp / "out"), *CLI_FLAGS], timeout=300, hard_limit=2 * 2**30,
                            env={"SSL_CERT_FILE": str(pki.ca_file)})
        seen = {url: (web.hits(url), web.hit_times(url)) for url, *_ in cases for web in webs.values()
                if url.startswith(web.base_url + "/")}
        loop_hits = [plain.hits(f"/loop/{side}/t-loop") for side in ("a", "b")]
    finally:
        for web in webs.values():
            web.stop()
    rows = pq.read_table(tmp / "out" / "samples.parquet").to_pylist() if run.rc == 0 else []
    return {"run": run, "cases": cases, "rows": rows, "seen": seen, "loop_hits": loop_hits}


def test_every_fault_ends_in_exactly_one_row_with_the_expected_status_and_reason(faulted):
    run, rows, cases = faulted["run"], faulted["rows"], faulted["cases"]
    assert run.rc == 0, run.stderr[-3000:]
    assert [r["url"] for r in rows] == [url for url, *_ in cases]
    got = [(r["url"], r["status"], r["error"], r["attempts"]) for r in rows]
    assert got == cases
    assert all(r["status"] in SAMPLE_STATUSES for r in rows)


def test_attempts_are_what_the_server_saw(faulted):
    """Every attempt that reached a server is one request there, and there are no others. TLS failures
    never get to a request; the redirect loop is one request per hop."""
    for r in faulted["rows"]:
        if r["url"] in faulted["seen"] and "tls:" not in (r["error"] or ""):
            assert faulted["seen"][r["url"]][0] == r["attempts"], r
    assert all(faulted["seen"][r["url"]][0] == 0 for r in faulted["rows"] if "tls: certificate" in (r["error"] or ""))
    assert faulted["loop_hits"] == [1, 1]


def test_retries_wait_as_told_and_every_url_ends_within_its_deadline(faulted):
    run, seen = faulted["run"], faulted["seen"]
    times = {url.rsplit("/", 1)[-1]: t for url, (_, t) in seen.items()}
    gaps = [b - a for a, b in zip(times["t-429.jpg"], times["t-429.jpg"][1:])]
    assert len(gaps) == 2 and min(gaps) >= 0.95  # Retry-After: 1 honoured, not the 0.05 s backoff
    [capped] = [b - a for a, b in zip(times["t-429l.jpg"], times["t-429l.jpg"][1:])]
    assert 0.95 <= capped <= BACKOFF_MAX + 1.0  # Retry-After: 3600 capped at backoff_max
    for url, (_, t) in seen.items():
        assert not t or t[-1] - t[0] <= DEADLINE - TIMEOUT + 0.5, (url, t)
    # All URLs run at once, so the whole crawl takes about one URL's deadline (plus process start-up).
    assert run.wall_s < DEADLINE + 20, run.wall_s


def test_memory_stays_bounded_under_the_fault_web(faulted):
    """Stalls, drips, resets and retries hold connections, not memory: the tree stays far below the
    bound proven with bombs in test_crawler_bounds (no bodies beyond a few photos are ever held)."""
    assert faulted["run"].peak_rss < BOUND, faulted["run"].peak_rss


def test_no_crawler_process_outlives_a_finished_crawl(faulted):
    assert faulted["run"].leftovers == []


def test_no_crawler_process_outlives_a_killed_crawl(tmp_path):
    """SIGKILL the CLI mid-crawl: its crawler processes die with it (nothing keeps writing chunks)."""
    with ImageWeb() as web:
        urls = [fault_url(web.base_url, "drip", f"k{i}", 30) for i in range(600)]
        src = tmp_path / "urls.jsonl"
        src.write_text("".join(json.dumps({"url": u}) + "\n" for u in urls))
        run = run_crawl_cli([str(src), str(tmp_path / "out"), "--allow-network", "127.0.0.0/8", "--processes", "3",
                             "--quiet"], timeout=120, hard_limit=2 * 2**30, kill_after=6.0)
        assert web.total_hits() > 0  # the crawl was under way, children included, when it was killed
    assert run.rc == -9
    assert run.leftovers == []


def test_transient_dns_failures_are_retried_and_permanent_ones_are_not(tmp_path):
    calls: dict[str, int] = {}

    async def resolver(host: str, port: int) -> list[str]:
        calls[host] = calls.get(host, 0) + 1
        error = socket.EAI_AGAIN if host.startswith("flaky") else socket.EAI_NONAME
        raise socket.gaierror(error, "test resolver")

    src = tmp_path / "urls.jsonl"
    src.write_text(json.dumps({"url": "http://flaky.example/x.jpg"}) + "\n" + json.dumps({"url": "http://gone.example/x.jpg"}) + "\n")
    crawl(src, tmp_path / "out", CrawlConfig(retries=2, backoff_base=0.01), resolver=resolver)
    rows = pq.read_table(tmp_path / "out" / "samples.parquet").to_pylist()
    assert [(r["error"], r["attempts"]) for r in rows] == [
        ("dns: cannot resolve flaky.example after 3 attempts", 3), ("dns: cannot resolve gone.example", 1)]
    assert calls == {"flaky.example": 3, "gone.example": 1}


def test_a_server_ignoring_identity_gets_its_gzip_decoded_faithfully(tmp_path):
    """We ask for ``Accept-Encoding: identity``; a server that gzips anyway still gets decoded (under
    the decoded-size cap), to the same image as the plain bytes give."""
    with ImageWeb() as web:
        urls = [f"{web.base_url}/gzip/photo/same.jpg", f"{web.base_url}/robots/all/same.jpg"]
        src = tmp_path / "urls.jsonl"
        src.write_text("".join(json.dumps({"url": u}) + "\n" for u in urls))
        crawl(src, tmp_path / "out", CrawlConfig(allow_networks=("127.0.0.0/8",)))
        assert web.last_headers("/gzip/photo/same.jpg")["Accept-Encoding"] == "identity"
    gz, plain = pq.read_table(tmp_path / "out" / "samples.parquet").to_pylist()
    assert gz["status"] == plain["status"] == "ok"
    assert gz["sha256"] == plain["sha256"] and gz["image"] == plain["image"]


def test_a_download_waiting_for_the_body_budget_still_ends_at_its_deadline(tmp_path):
    """Room for one body at a time (210 kB) and a stalled server holding it (Content-Length 100 kB,
    reserved twice over): a download that started first but gets its headers 0.5 s later waits for
    room inside its own deadline and times out with it, before the holder lets go, instead of
    hanging."""
    with ImageWeb() as web:
        urls = [fault_url(web.base_url, "slow", "waits", 0.5), f"{web.base_url}/stall/held.jpg"]
        src = tmp_path / "urls.jsonl"
        src.write_text("".join(json.dumps({"url": u}) + "\n" for u in urls))
        config = CrawlConfig(allow_networks=("127.0.0.0/8",), timeout=1.5, retries=0, body_memory=210_000)
        summary = crawl(src, tmp_path / "out", config)
        assert [web.hits(u) for u in urls] == [1, 1]  # both got their headers: the wait was for memory
    rows = pq.read_table(tmp_path / "out" / "samples.parquet").to_pylist()
    assert [(r["status"], r["error"]) for r in rows] == [("failed_download", "timeout after 1 attempts")] * 2
    assert summary.elapsed_s < config.timeout + 5
