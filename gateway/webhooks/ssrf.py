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


def _public(ip: IPAddress) -> bool:
    """is_global excludes private, loopback, link-local (169.254.169.254 metadata), CGNAT, ULA, reserved ranges."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _public(ip.ipv4_mapped)
    return ip.is_global and not ip.is_multicast


def address_allowed(ip: IPAddress, allowed: Sequence[IPNetwork]) -> bool:
    plain = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None else ip
    return _public(plain) or any(plain.version == net.version and plain in net for net in allowed)


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
