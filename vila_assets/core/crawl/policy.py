"""Which URLs the crawler may connect to: http(s) only, public addresses only (plus allow-listed networks).

A hostname is resolved here, every address is checked, and the connection is then pinned to a vetted
address, so a DNS answer that changes between check and connect (rebinding) cannot reach a private host.
An IPv6 address that carries an IPv4 one (mapped ``::ffff:a.b.c.d``, 6to4 ``2002::/16``, NAT64
``64:ff9b::/96``) is checked as that IPv4 address too. Credentials in a URL are dropped: the crawler
never sends data-supplied credentials anywhere. See SECURITY.md for what is tested.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ALLOWED_SCHEMES = ("http", "https")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
# (host, port) -> addresses as strings; raises socket.gaierror like getaddrinfo. Tests swap it.
Resolver = Callable[[str, int], Awaitable[list[str]]]


class Blocked(Exception):
    """The URL (or a redirect hop) is outside the policy; it was never connected to."""


class ResolveError(Exception):
    """The host name did not resolve; ``transient`` says whether trying again could help."""

    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class Target:
    """A vetted URL: where to connect (an IP literal) and what to tell the server (Host, SNI)."""

    url: httpx.URL
    address: IPAddress
    host_key: str  # "host:port", the unit of the per-host limit

    @property
    def connect_url(self) -> httpx.URL:
        host = str(self.address)
        return self.url.copy_with(host=host)

    @property
    def host_header(self) -> str:
        default = 443 if self.url.scheme == "https" else 80
        port = self.url.port
        return self.url.host if port in (None, default) else f"{self.url.host}:{port}"


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one forwards to, if any (mapped, 6to4, NAT64 well-known prefix)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _why_not_public(ip: IPAddress) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address) and (inner := _embedded_ipv4(ip)) is not None:
        why = _why_not_public(inner)
        if why is not None:
            return f"{why} ({inner} inside)" if ip.ipv4_mapped is None else why
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("not globally routable", not ip.is_global),
    )
    for name, hit in checks:
        if hit:
            return name
    return None


class UrlPolicy:
    def __init__(self, allow_networks: tuple[str, ...] | list[str] = (), resolver: Resolver | None = None) -> None:
        self.allow_networks = tuple(ipaddress.ip_network(n, strict=False) for n in allow_networks)
        self._resolver = resolver or _system_resolver

    def check_address(self, ip: IPAddress) -> None:
        """Raise ``Blocked`` unless ``ip`` is public or inside an allowed network."""
        if any(ip.version == net.version and ip in net for net in self.allow_networks):
            return
        why = _why_not_public(ip)
        if why is not None:
            raise Blocked(f"blocked: {ip} is {why}")

    def parse(self, url: str | httpx.URL) -> httpx.URL:
        """Parse and check the scheme; raise ``Blocked`` for anything but http(s) with a host."""
        try:
            parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        except Exception as exc:  # noqa: BLE001 - httpx.InvalidURL and friends
            raise Blocked(f"blocked: invalid url ({type(exc).__name__})") from None
        if parsed.scheme not in ALLOWED_SCHEMES:
            raise Blocked(f"blocked: scheme {parsed.scheme or '(none)'!r} not allowed")
        if not parsed.host:
            raise Blocked("blocked: url has no host")
        if parsed.userinfo:
            parsed = parsed.copy_with(userinfo=b"")  # no data-supplied credentials go anywhere
        return parsed

    async def vet(self, url: str | httpx.URL) -> Target:
        """Parse, resolve and check every address; return the address to connect to."""
        parsed = self.parse(url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        addresses = await self._resolve(parsed.host, port)
        for ip in addresses:  # ANY private answer blocks the host: attackers control DNS answers
            self.check_address(ip)
        return Target(url=parsed, address=addresses[0], host_key=f"{parsed.host}:{port}")

    async def _resolve(self, host: str, port: int) -> list[IPAddress]:
        literal = _ip_literal(host)
        if literal is not None:
            return [literal]
        try:
            answers = await self._resolver(host, port)
        except socket.gaierror as exc:
            transient = exc.errno in (socket.EAI_AGAIN,)
            raise ResolveError(f"dns: cannot resolve {host}", transient) from None
        seen: dict[str, IPAddress] = {}
        for answer in answers:
            ip = ipaddress.ip_address(answer.split("%", 1)[0])
            seen.setdefault(str(ip), ip)
        if not seen:
            raise ResolveError(f"dns: no address for {host}", False)
        return list(seen.values())


_NUMERIC_HOST = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}", re.IGNORECASE)


def _ip_literal(host: str) -> IPAddress | None:
    """``host`` as an IP address when it is one, else None: brackets and one trailing dot allowed, and
    the numeric IPv4 forms browsers accept (``2130706433``, ``0x7f.1``, ``017700000001``, ``127.1``)
    read as the address they spell, whatever resolver is configured (one that asks DNS would
    otherwise look them up as names)."""
    host = host.strip("[]").removesuffix(".")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


async def _system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [sockaddr[0] for _family, _type, _proto, _canon, sockaddr in infos]
