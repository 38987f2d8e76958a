"""Download one URL politely and defensively.

Pooled httpx client; a total deadline per attempt (not per socket read, so a slow drip cannot hold a
slot forever); retries with capped exponential backoff and jitter for transient failures only;
redirects followed by hand so the URL policy re-checks every hop before any connection; the body is
decoded here (``body.py``) and abandoned once its wire or DECODED size passes ``max_bytes``; it is held
under the crawl's body budget (``budget.py``) from the headers until its image is processed. TLS
failures are permanent (a certificate does not get valid by asking again). Error strings are fixed
words (no timings, no exception text), because they end up in samples.parquet, which must be
byte-identical between runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import random
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from .body import BadEncoding, BodyTooLarge, BoundedBody
from .budget import Reservation
from .policy import Blocked, ResolveError, UrlPolicy
from .transport import TlsError

REDIRECT_CODES = (301, 302, 303, 307, 308)
# X-Robots-Tag directives that mean "do not use for training" (img2dataset's list plus "none").
OPT_OUT_DIRECTIVES = frozenset({"noai", "noimageai", "noindex", "noimageindex", "none"})


@dataclass
class FetchResult:
    """``data`` is set on success; otherwise ``status`` / ``error`` say why not."""

    data: bytes | None
    status: str | None = None
    error: str | None = None
    http_status: int | None = None
    attempts: int = 0
    nbytes: int = 0


@dataclass
class _Outcome:
    kind: str  # "ok" | "transient" | "permanent" | "blocked" | "opted_out"
    error: str | None = None
    http_status: int | None = None
    data: bytes | None = None
    retry_after: float | None = None


def opted_out(header_values: list[str], ua_token: str) -> bool:
    """True when an X-Robots-Tag value (optionally scoped "agent: ...") disallows AI use for us."""
    for value in header_values:
        scoped = value.split(":", 1)
        agent = scoped[0].strip().lower() if len(scoped) == 2 else None
        directives = {d.strip().lower() for d in scoped[-1].split(",")}
        if agent in (None, ua_token, "*") and directives & OPT_OUT_DIRECTIVES:
            return True
    return False


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _NoCookies(httpx.Cookies):
    """A crawler keeps no cookies: a site must not be able to follow us from URL to URL (or learn what
    else we fetched), and a jar filled by millions of hosts would only grow. Also skips httpx's
    http.cookiejar round trip per response (~5 % of the event loop's time in a profile)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class _CrawlClient(httpx.AsyncClient):
    _no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, value) -> None:
        raise TypeError("the crawler's client keeps no cookies")


class Fetcher:
    def __init__(self, config, policy: UrlPolicy, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.policy = policy
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._host_slots: dict[str, asyncio.Semaphore] = {}
        self._host_users: dict[str, int] = {}
        self.ua_token = config.user_agent.split("/", 1)[0].strip().lower()

    async def __aenter__(self) -> Fetcher:
        limits = httpx.Limits(
            max_connections=self.config.concurrency,
            max_keepalive_connections=self.config.concurrency,
        )
        self._client = _CrawlClient(
            limits=limits,
            timeout=httpx.Timeout(self.config.timeout),
            follow_redirects=False,  # every hop goes back through the policy
            trust_env=False,  # an env proxy would connect on our behalf, bypassing the policy
            headers={
                "User-Agent": self.config.user_agent,
                "Accept": "image/*,*/*;q=0.5",
                "Accept-Encoding": "identity",  # images are compressed already; no gzip bombs
            },
            transport=self._transport or self._default_transport(),
        )
        return self

    def _default_transport(self) -> httpx.AsyncBaseTransport | None:
        if self.config.http_backend == "httpx":
            return None
        from .transport import AiohttpTransport

        return AiohttpTransport(
            self.config.concurrency, self.config.timeout, self.config.timeout, whole_body_max=self.config.max_bytes
        )

    async def __aexit__(self, *exc) -> None:
        assert self._client is not None
        await self._client.aclose()

    @contextlib.asynccontextmanager
    async def _host_slot(self, key: str) -> AsyncIterator[None]:
        sem = self._host_slots.get(key)
        if sem is None:
            sem = self._host_slots[key] = asyncio.Semaphore(self.config.per_host)
        self._host_users[key] = self._host_users.get(key, 0) + 1
        try:
            async with sem:
                yield
        finally:
            self._host_users[key] -= 1
            if not self._host_users[key]:  # keep the dict bounded by hosts in flight
                del self._host_users[key], self._host_slots[key]

    def backoff(self, attempt: int) -> float:
        base = min(self.config.backoff_max, self.config.backoff_base * 2 ** (attempt - 1))
        return base * random.uniform(0.5, 1.0)  # jitter: retries from many workers don't synchronise

    async def fetch(self, url: str, hold: Reservation | None = None) -> FetchResult:
        """Download ``url``. ``hold``: the body budget reservation that keeps the returned bytes
        accounted for; the caller releases it once done with them (it is empty after a failure)."""
        attempts = 0
        while True:
            attempts += 1
            try:
                async with asyncio.timeout(self.config.timeout):
                    outcome = await self._attempt(url, hold)
            except TimeoutError:
                outcome = _Outcome("transient", "timeout")
            if outcome.kind != "ok" and hold is not None:
                hold.release()  # nothing is held across a backoff
            if outcome.kind != "transient" or attempts > self.config.retries:
                break
            delay = outcome.retry_after if outcome.retry_after is not None else self.backoff(attempts)
            await asyncio.sleep(min(delay, self.config.backoff_max))
        if outcome.kind == "ok":
            assert outcome.data is not None
            return FetchResult(outcome.data, None, None, outcome.http_status, attempts, len(outcome.data))
        status = {"blocked": "blocked", "opted_out": "opted_out"}.get(outcome.kind, "failed_download")
        error = outcome.error
        if outcome.kind == "transient":
            error = f"{error} after {attempts} attempts"
        return FetchResult(None, status, error, outcome.http_status, attempts)

    def _request_to(self, target) -> httpx.Request:
        """A GET for ``target`` that can only reach the vetted address."""
        if self.config.http_backend == "aiohttp":
            # Our transport connects to the ``connect_address`` extension itself (see transport.py), so the
            # request keeps its real URL: no second URL parse per request, Host and SNI come for free.
            return self._client.build_request("GET", target.url, extensions={"connect_address": str(target.address)})
        extensions = {"sni_hostname": target.url.host} if target.url.scheme == "https" else {}
        return self._client.build_request(
            "GET", target.connect_url, headers={"Host": target.host_header}, extensions=extensions
        )

    async def _attempt(self, url: str, hold: Reservation | None) -> _Outcome:
        assert self._client is not None
        current: str | httpx.URL = url
        seen: set[str] = set()
        for _hop in range(self.config.max_redirects + 1):
            try:
                target = await self.policy.vet(current)
            except Blocked as exc:
                return _Outcome("blocked", str(exc))
            except ResolveError as exc:
                return _Outcome("transient" if exc.transient else "permanent", str(exc))
            seen.add(str(target.url))
            request = self._request_to(target)
            async with self._host_slot(target.host_key):
                try:
                    response = await self._client.send(request, stream=True)
                except httpx.TimeoutException:
                    return _Outcome("transient", "timeout")
                except httpx.ConnectError as exc:
                    tls = tls_reason(exc)
                    return _Outcome("permanent", tls) if tls else _Outcome("transient", "connection error")
                except httpx.TransportError as exc:
                    return _Outcome("transient", f"transport error ({type(exc).__name__})")
                try:
                    code = response.status_code
                    if code in REDIRECT_CODES and "location" in response.headers:
                        try:
                            current = target.url.join(response.headers["location"])
                        except Exception:  # noqa: BLE001
                            return _Outcome("permanent", "bad redirect location", code)
                        if str(current) in seen:
                            return _Outcome("permanent", f"redirect loop after {len(seen)} hops", code)
                        continue
                    return await self._read(response, hold)
                finally:
                    await response.aclose()
        return _Outcome("permanent", f"too many redirects (> {self.config.max_redirects})")

    async def _read(self, response: httpx.Response, hold: Reservation | None) -> _Outcome:
        code = response.status_code
        if code == 429:
            return _Outcome("transient", "http 429", code, retry_after=parse_retry_after(response.headers.get("retry-after")))
        if code >= 500:
            return _Outcome("transient", f"http {code}", code, retry_after=parse_retry_after(response.headers.get("retry-after")))
        if code >= 300:
            return _Outcome("permanent", f"http {code}", code)
        if opted_out(response.headers.get_list("x-robots-tag"), self.ua_token):
            return _Outcome("opted_out", "x-robots-tag opt-out", code)
        cap = self.config.max_bytes
        declared = response.headers.get("content-length")
        length = int(declared) if declared is not None and declared.isdigit() else None
        if length is not None and length > cap:
            return _Outcome("permanent", f"too large: content-length {declared} > {cap}", code)
        try:
            body = BoundedBody(response.headers.get("content-encoding"), cap)
        except BadEncoding as exc:
            return _Outcome("permanent", str(exc), code)
        if hold is not None:
            # Pieces and their join coexist for a moment: twice the most this body can become.
            await hold.resize(2 * (length if length is not None and not body.encoded else cap))
        try:
            async for chunk in response.aiter_raw():
                body.feed(chunk)
            data = body.result()
        except (BodyTooLarge, BadEncoding) as exc:
            return _Outcome("permanent", str(exc), code)
        except httpx.TimeoutException:
            return _Outcome("transient", "timeout", code)
        except httpx.RemoteProtocolError:
            return _Outcome("transient", "truncated body", code)
        except httpx.TransportError as exc:
            return _Outcome("transient", f"transport error ({type(exc).__name__})", code)
        if hold is not None:
            await hold.resize(len(data))
        return _Outcome("ok", None, code, data=data)


def tls_reason(exc: BaseException) -> str | None:
    """A fixed reason when ``exc`` (or what caused it) is a TLS failure, else None."""
    if isinstance(exc, TlsError):
        return str(exc)
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return f"tls: certificate verify failed ({(exc.verify_message or 'unknown')[:80]})"
        if isinstance(exc, ssl.SSLError):
            return "tls: handshake failed"
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None
