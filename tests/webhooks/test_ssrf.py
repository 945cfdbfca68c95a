"""The SSRF guard judges an IPv6 address by the IPv4 address it carries, and treats reserved ranges as private."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.webhooks.ssrf import address_allowed, parse_networks

REFUSED = [
    "::127.0.0.1",  # IPv4-compatible loopback
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:0:127.0.0.1",  # IPv4-translated
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of the metadata address 169.254.169.254
    "64:ff9b:1::a9fe:a9fe",  # local-use NAT64
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    "2001:0:4136:e378:8000:63bf:f5ff:fff5",  # Teredo, client 10.0.0.10
    "::",
    "::1",
    "fe80::1",
    "fc00::1",
    "ff02::1",
    "240.0.0.1",  # reserved
    "0.0.0.0",
    "198.18.0.1",  # benchmarking
    "100.64.0.1",  # CGNAT
]
ALLOWED = ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "64:ff9b::5db8:d822", "2002:5db8:d822::1"]


@pytest.mark.parametrize("address", REFUSED)
def test_private_loopback_metadata_and_reserved_forms_are_refused(address: str) -> None:
    assert not address_allowed(ipaddress.ip_address(address), [])


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_and_their_ipv6_wrappings_are_allowed(address: str) -> None:
    assert address_allowed(ipaddress.ip_address(address), [])


def test_an_operator_allowed_subnet_covers_the_wrapped_form_too() -> None:
    allowed = parse_networks(["127.0.0.0/8"])
    assert address_allowed(ipaddress.ip_address("::ffff:127.0.0.1"), allowed)
    assert address_allowed(ipaddress.ip_address("64:ff9b::7f00:1"), allowed)
    assert not address_allowed(ipaddress.ip_address("10.0.0.1"), allowed)
