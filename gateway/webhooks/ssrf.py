"""SSRF guard: a target must resolve only to public addresses, unless the operator allowed the subnet."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TargetRefused(ValueError):
    """Why a URL may not receive webhooks; the message is safe to show the caller."""


def parse_networks(cidrs: Sequence[str]) -> list[IPNetwork]:
    return [ipaddress.ip_network(cidr, strict=False) for cidr in cidrs]


NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the IPv4 address is the last 32 bits
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: local-use NAT64, never a public destination


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and would reach: IPv4-mapped (`::ffff:a.b.c.d`), IPv4-translated
    (`::ffff:0:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`), 6to4 (`2002:AABB:CCDD::`) or
    Teredo (the client address). Deciding on the IPv6 form alone lets `[::127.0.0.1]` reach loopback."""
    value = int(ip)
    high, low = value >> 32, ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if high == 0xFFFF0000 or (high == 0 and value > 1):
        return low
    if ip in NAT64_WELL_KNOWN:
        return low
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def _public(ip: IPAddress) -> bool:
    """is_global excludes private, loopback, link-local (169.254.169.254 metadata), CGNAT, ULA; reserved,
    multicast and unspecified ranges are refused too. IPv6 forms that carry an IPv4 address are judged by it."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in NAT64_LOCAL:
            return False
        inner = embedded_ipv4(ip)
        if inner is not None:
            return _public(inner)
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def address_allowed(ip: IPAddress, allowed: Sequence[IPNetwork]) -> bool:
    inner = embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    plain = inner or ip
    return _public(ip) or any(plain.version == net.version and plain in net for net in allowed)


def split_target(url: str) -> tuple[str, int]:
    """(host, port) of an http(s) URL without credentials; raises TargetRefused otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise TargetRefused("the URL is malformed") from None
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("the URL must be http or https")
    if not parts.hostname:
        raise TargetRefused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("the URL must not carry credentials")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise TargetRefused(f"the host {host!r} does not resolve") from None
    # Strip an IPv6 zone id ("fe80::1%eth0") before parsing.
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))


async def check_target(url: str, allowed: Sequence[IPNetwork]) -> None:
    """Every address the host resolves to must be allowed: one private answer is enough to refuse."""
    host, port = split_target(url)
    addresses = await resolve(host, port)
    if not addresses:
        raise TargetRefused(f"the host {host!r} does not resolve")
    for ip in addresses:
        if not address_allowed(ip, allowed):
            raise TargetRefused(
                f"the URL resolves to {ip}, a private, loopback, link-local or reserved address "
                "(allow its subnet with EGW_WEBHOOK_ALLOWED_SUBNETS)"
            )
