"""Which URLs the crawler may connect to: http(s) only, public addresses only (plus allow-listed networks).

A hostname is resolved here, every address is checked, and the connection is then pinned to a vetted
address, so a DNS answer that changes between check and connect (rebinding) cannot reach a private host.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ALLOWED_SCHEMES = ("http", "https")


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


def _why_not_public(ip: IPAddress) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _why_not_public(ip.ipv4_mapped)
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
    def __init__(self, allow_networks: tuple[str, ...] | list[str] = ()) -> None:
        self.allow_networks = tuple(ipaddress.ip_network(n, strict=False) for n in allow_networks)

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
        return parsed

    async def vet(self, url: str | httpx.URL) -> Target:
        """Parse, resolve and check every address; return the address to connect to."""
        parsed = self.parse(url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        addresses = await self._resolve(parsed.host, port)
        for ip in addresses:  # ANY private answer blocks the host: attackers control DNS answers
            self.check_address(ip)
        return Target(url=parsed, address=addresses[0], host_key=f"{parsed.host}:{port}")

    @staticmethod
    async def _resolve(host: str, port: int) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            pass
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            transient = exc.errno in (socket.EAI_AGAIN,)
            raise ResolveError(f"dns: cannot resolve {host}", transient) from None
        seen: dict[str, IPAddress] = {}
        for _family, _type, _proto, _canon, sockaddr in infos:
            ip = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
            seen.setdefault(str(ip), ip)
        if not seen:
            raise ResolveError(f"dns: no address for {host}", False)
        return list(seen.values())
