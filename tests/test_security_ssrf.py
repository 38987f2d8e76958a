"""SSRF and scheme checks of the crawler's URL policy, and proof that a vetted address is the one
connected to.

Most cases run the policy itself (with a resolver that answers every name with a public address, so
only the address forms are under test); the end-to-end ones crawl through the image web with an
"internal service" (another image web on 127.0.0.2) that must never see a request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import socket
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from vila_assets.core.crawl import Blocked, CrawlConfig, UrlPolicy, crawl
from vila_assets.core.crawl.policy import ResolveError
from vila_assets.sample_world.image_web import ImageWeb, photo_url

PUBLIC = "93.184.216.34"


async def _public_resolver(host: str, port: int) -> list[str]:
    return [PUBLIC]


def _vet(url: str, resolver=_public_resolver, allow=()):
    return asyncio.run(UrlPolicy(allow, resolver=resolver).vet(url))


BLOCKED_FORMS = [
    # private, shared and link-local space, cloud metadata services (AWS/GCP/Azure, AWS IPv6, Alibaba)
    ("http://10.0.0.1/", "10.0.0.1 is private"),
    ("http://172.16.0.1/", "172.16.0.1 is private"),
    ("http://192.168.1.1/", "192.168.1.1 is private"),
    ("http://100.64.0.1/", "100.64.0.1 is not globally routable"),
    ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is link-local"),
    ("http://169.254.169.254./latest/meta-data", "169.254.169.254 is link-local"),
    ("http://[fd00:ec2::254]/", "fd00:ec2::254 is private"),
    ("http://100.100.100.200/", "100.100.100.200 is not globally routable"),
    ("http://[fe80::1]/", "fe80::1 is link-local"),
    # loopback and unspecified, IPv6 spellings included
    ("http://127.0.0.1/", "127.0.0.1 is loopback"),
    ("http://127.255.255.254/", "127.255.255.254 is loopback"),
    ("http://[::1]/", "::1 is loopback"),
    ("http://[0:0:0:0:0:0:0:1]/", "::1 is loopback"),
    ("http://0.0.0.0/", "0.0.0.0 is unspecified"),
    ("http://[::]/", ":: is unspecified"),
    # IPv4 inside IPv6: mapped, compatible, 6to4, NAT64
    ("http://[::ffff:127.0.0.1]/", "::ffff:7f00:1 is loopback"),
    ("http://[::ffff:7f00:1]/", "::ffff:7f00:1 is loopback"),
    ("http://[::ffff:169.254.169.254]/", "::ffff:a9fe:a9fe is link-local"),
    ("http://[::127.0.0.1]/", "::7f00:1 is reserved"),
    ("http://[2002:7f00:1::]/", "2002:7f00:1:: is loopback (127.0.0.1 inside)"),
    ("http://[2002:a9fe:a9fe::1]/", "2002:a9fe:a9fe::1 is link-local (169.254.169.254 inside)"),
    ("http://[64:ff9b::a00:1]/", "64:ff9b::a00:1 is private (10.0.0.1 inside)"),
    # decimal, hex, octal and shortened IPv4 forms: addresses, whatever the resolver would say
    ("http://2130706433/", "127.0.0.1 is loopback"),
    ("http://0x7f000001/", "127.0.0.1 is loopback"),
    ("http://0x7f.1/", "127.0.0.1 is loopback"),
    ("http://017700000001/", "127.0.0.1 is loopback"),
    ("http://127.1/", "127.0.0.1 is loopback"),
    ("http://0xa9.0xfe.0xa9.0xfe/", "169.254.169.254 is link-local"),
    ("http://2852039166/", "169.254.169.254 is link-local"),
    ("http://3232235777/", "192.168.1.1 is private"),
    ("http://10.1/", "10.0.0.1 is private"),
    ("http://0/", "0.0.0.0 is unspecified"),
    ("http://0177.0.0.1/", "invalid url"),  # the URL parser refuses leading-zero octets outright
    # userinfo tricks: the host is what follows the last "@" before the path
    ("http://example.com@127.0.0.1/", "127.0.0.1 is loopback"),
    ("http://user:pass@169.254.169.254/", "169.254.169.254 is link-local"),
    ("http://example.com:80@10.0.0.1/", "10.0.0.1 is private"),
    ("http://evil.example\\@127.0.0.1/", "127.0.0.1 is loopback"),
]


@pytest.mark.parametrize("url, reason", BLOCKED_FORMS, ids=[u for u, _ in BLOCKED_FORMS])
def test_non_public_addresses_are_blocked_in_every_spelling(url, reason):
    with pytest.raises(Blocked, match="blocked: " + reason.replace("(", r"\(").replace(")", r"\)")):
        _vet(url)


def test_numeric_forms_are_addresses_not_names():
    """Regression: decimal/hex/octal IPv4 hosts used to go to the resolver as names. The system
    resolver happens to read them as addresses, but one that asks DNS (or any other) must not be
    consulted: ``0x7f.1`` is 127.0.0.1, as in every browser."""
    asked = []

    async def recording(host: str, port: int) -> list[str]:
        asked.append(host)
        return [PUBLIC]

    for url in ("http://2130706433/", "http://0x7f.1/", "http://017700000001/", "http://127.1/"):
        with pytest.raises(Blocked, match="127.0.0.1 is loopback"):
            _vet(url, recording)
    assert asked == []


def test_userinfo_tricks_resolve_the_real_host_and_credentials_are_dropped():
    """What the policy vets is what the request goes to: the host after the userinfo (never the text
    before "@", after "#" or "?"), and the vetted URL carries no credentials."""
    for url, host in [("http://127.0.0.1:80@example.com/", "example.com"), ("http://example.com#@127.0.0.1/", "example.com"),
                      ("http://example.com?@127.0.0.1/", "example.com"), ("http://10.0.0.1%2f@example.com/", "example.com")]:
        target = _vet(url)
        assert (target.url.host, str(target.address)) == (host, PUBLIC), url
        assert not target.url.userinfo


@pytest.mark.parametrize("answers, reason", [
    (["10.0.0.5"], "10.0.0.5 is private"),
    ([PUBLIC, "10.0.0.5"], "10.0.0.5 is private"),  # any private answer blocks the name
    (["::1"], "::1 is loopback"),
    (["::ffff:169.254.169.254"], "link-local"),
    (["fe80::1%eth0"], "fe80::1 is link-local"),
])
def test_names_resolving_into_private_space_are_blocked(answers, reason):
    async def resolver(host: str, port: int) -> list[str]:
        return answers

    with pytest.raises(Blocked, match=reason):
        _vet("http://innocent.example/x.jpg", resolver)


def test_localhost_through_the_system_resolver_is_blocked():
    with pytest.raises(Blocked, match="loopback"):
        _vet("http://localhost/x.jpg", resolver=None)


@pytest.mark.parametrize("url", ["ftp://example.com/a.jpg", "file:///etc/passwd", "gopher://example.com/", "data:image/png;base64,AA",
                                 "javascript:alert(1)", "ws://example.com/", "wss://example.com/", "dict://example.com:11211/",
                                 "ldap://example.com/", "jar:http://example.com/a.jar!/", "http+unix://%2Fvar%2Frun%2Fdocker.sock/",
                                 "//example.com/a.jpg", "http:/example.com/a.jpg"])
def test_only_http_and_https_with_a_host_are_allowed(url):
    with pytest.raises(Blocked, match="blocked: (scheme|url has no host|invalid url)"):
        _vet(url)


def test_resolver_failures_are_not_blocks():
    async def failing(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "nope")

    with pytest.raises(ResolveError, match="dns: cannot resolve nowhere.example"):
        _vet("http://nowhere.example/", failing)


# ---------------------------------------------------------------- end to end, through the crawler
@pytest.fixture
def public_and_internal():
    """A "public" web on 127.0.0.1 (the only allowed network) and an "internal service" on 127.0.0.2
    listening on the same port: a request that reaches the second one is an SSRF."""
    for _ in range(20):
        public = ImageWeb(host="127.0.0.1")
        public.start()
        internal = ImageWeb(host="127.0.0.2", port=int(public.base_url.rsplit(":", 1)[1]))
        try:
            internal.start()
        except OSError:  # the port is taken on 127.0.0.2: try another
            public.stop()
            continue
        try:
            yield public, internal
        finally:
            public.stop()
            internal.stop()
        return
    raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.2")


def _crawl(tmp_path, urls, **kw) -> list[dict]:
    src = tmp_path / "urls.jsonl"
    src.write_text("".join(json.dumps({"url": u}) + "\n" for u in urls))
    config = CrawlConfig(allow_networks=("127.0.0.1/32",), retries=0, event_loop="asyncio", **kw.pop("config", {}))
    crawl(src, tmp_path / "out", config, **kw)
    return pq.read_table(tmp_path / "out" / "samples.parquet").to_pylist()


def _to(web: ImageWeb, target: str) -> str:
    return f"{web.base_url}/to/{target.encode().hex()}"


def test_redirects_into_private_space_are_blocked_before_connecting(tmp_path, public_and_internal):
    public, internal = public_and_internal
    port = public.base_url.rsplit(":", 1)[1]
    targets = [f"http://127.0.0.2:{port}/photo/red/circle/1/64x48.jpg", f"http://2130706434:{port}/x.jpg",
               f"http://0x7f000002:{port}/x.jpg", f"http://127.2:{port}/x.jpg", f"http://[::ffff:127.0.0.2]:{port}/x.jpg",
               f"http://[::ffff:127.0.0.1]:{port}/x.jpg", f"http://[::1]:{port}/x.jpg", "http://169.254.169.254/latest/meta-data",
               "http://10.0.0.1/x.jpg", "file:///etc/passwd", f"ftp://127.0.0.1:{port}/x.jpg", f"gopher://127.0.0.1:{port}/"]
    rows = _crawl(tmp_path, [_to(public, t) for t in targets])
    assert [r["status"] for r in rows] == ["blocked"] * len(targets), [(r["url"], r["error"]) for r in rows]
    assert all(r["error"].startswith("blocked: ") for r in rows)
    assert internal.total_hits() == 0
    assert [public.hits(_to(public, t)) for t in targets] == [1] * len(targets)


def test_dns_rebinding_cannot_move_the_connection(tmp_path, public_and_internal, monkeypatch):
    """The name first resolves to the allowed 127.0.0.1, then (to anyone asking again, the system
    resolver included) to 127.0.0.2. The crawler connects to the address it checked, for both wire
    layers; a redirect hop to the same name is checked again and blocked."""
    public, internal = public_and_internal
    port = public.base_url.rsplit(":", 1)[1]
    answers = {"n": 0}

    async def rebinding(host: str, port: int) -> list[str]:
        answers["n"] += 1
        return ["127.0.0.1" if answers["n"] == 1 else "127.0.0.2"]

    real_getaddrinfo = socket.getaddrinfo

    def system_rebound(host, *args, **kwargs):  # a second lookup by the wire layer would land here
        return real_getaddrinfo("127.0.0.2" if host == "rebind.test" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", system_rebound)
    for backend in ("aiohttp", "httpx"):
        answers["n"] = 0
        out = tmp_path / backend
        out.mkdir()
        url = f"http://rebind.test:{port}/photo/red/circle/1/64x48.jpg"
        [row] = _crawl(out, [url], config={"http_backend": backend}, resolver=rebinding)
        assert row["status"] == "ok", (backend, row["error"])
        assert answers["n"] == 1 and public.hits("/photo/red/circle/1/64x48.jpg") >= 1
        assert internal.total_hits() == 0, backend
    answers["n"] = 0
    hop = f"http://rebind.test:{port}/redirect/1/photo/red/circle/2/64x48.jpg"
    [row] = _crawl(tmp_path, [hop], resolver=rebinding)
    assert (row["status"], row["error"]) == ("blocked", "blocked: 127.0.0.2 is loopback")
    assert public.hits("/redirect/1/photo/red/circle/2/64x48.jpg") == 1 and internal.total_hits() == 0


def test_the_connection_goes_to_the_vetted_address(tmp_path, public_and_internal):
    """Every request the wire layer sends is pinned to the policy's address (what the socket connects
    to), never to a fresh lookup of the URL's host."""
    from vila_assets.core.crawl.transport import AiohttpTransport

    public, _ = public_and_internal
    port = public.base_url.rsplit(":", 1)[1]
    sent = []

    class Recording(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = AiohttpTransport(4, 5, 5)

        async def handle_async_request(self, request):
            sent.append((request.url.host, request.extensions.get("connect_address")))
            return await self.inner.handle_async_request(request)

        async def aclose(self) -> None:
            await self.inner.aclose()

    async def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    [row] = _crawl(tmp_path, [f"http://pinned.test:{port}/photo/red/circle/3/64x48.jpg"], transport=Recording(),
                   resolver=resolver)
    assert row["status"] == "ok"
    assert sent == [("pinned.test", "127.0.0.1")]


def test_credentials_in_urls_are_never_sent(tmp_path, public_and_internal):
    public, _ = public_and_internal
    url = photo_url(public.base_url, "blue", "square", 4, 64, 48).replace("http://", "http://user:secret@")
    [row] = _crawl(tmp_path, [url])
    assert row["status"] == "ok"
    headers = {k.lower(): v for k, v in public.last_headers("/photo/blue/square/4/64x48.jpg").items()}
    assert "authorization" not in headers


def test_private_targets_stay_blocked_even_next_to_an_allowed_network():
    """Allowing 127.0.0.1/32 (a local test web) opens that network only: not its IPv4-mapped IPv6
    spelling, not the rest of 127/8, not private space."""
    allow = ("127.0.0.1/32",)
    assert _vet("http://127.0.0.1:1/", allow=allow).address == ipaddress.ip_address("127.0.0.1")
    for url in ("http://127.0.0.2/", "http://[::ffff:127.0.0.1]/", "http://10.0.0.1/"):
        with pytest.raises(Blocked):
            _vet(url, allow=allow)


def test_security_md_names_only_tests_that_exist():
    """SECURITY.md's table must match the tests: every ``file.py::test`` it names exists (a trailing
    ``*`` names a family of tests by prefix; ``::name`` alone refers to the file named before it)."""
    root = Path(__file__).resolve().parents[1]
    missing, current = [], None
    for token in re.findall(r"(test_\w+\.py)|::(test_\w+\*?)", (root / "SECURITY.md").read_text()):
        if token[0]:
            current = root / "tests" / token[0]
            if not current.is_file():
                missing.append(token[0])
            continue
        names = re.findall(r"^def (test_\w+)", current.read_text(), re.MULTILINE) if current and current.is_file() else []
        wanted = token[1]
        if not any(n.startswith(wanted[:-1]) if wanted.endswith("*") else n == wanted for n in names):
            missing.append(f"{current.name if current else '?'}::{wanted}")
    assert not missing, missing
