"""`emr-gateway healthcheck`: exit 0 when this host's `serve` answers /readyz, for container health checks.

Images without curl (python:slim) and orchestrators that run a command rather than an HTTP probe both need one; it
reads the same EGW_HOST/EGW_PORT as `serve`, so the check and the server cannot disagree about where to look.
"""

from __future__ import annotations

import argparse
import os

import httpx
import msgspec

from gateway.commands import CommandError, Subparsers, add_json_flag, emit

PROBES = {"ready": "/readyz", "live": "/healthz"}


class HealthcheckResult(msgspec.Struct, kw_only=True):
    url: str
    status: int


def register(sub: Subparsers) -> None:
    p = sub.add_parser("healthcheck", help="exit 0 if the local `serve` is ready (/readyz answers 200)")
    p.add_argument("--host", default=os.environ.get("EGW_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("EGW_PORT", "8000")))
    p.add_argument("--probe", choices=sorted(PROBES), default="ready", help="ready: /readyz (default); live: /healthz")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds")
    add_json_flag(p)
    p.set_defaults(handler=run)


def _url(host: str, port: int, path: str) -> str:
    # A server bound to every interface is reached on loopback; an IPv6 literal needs brackets.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"


def run(args: argparse.Namespace) -> int:
    url = _url(args.host, args.port, PROBES[args.probe])
    try:
        status = httpx.get(url, timeout=args.timeout).status_code
    except httpx.HTTPError as exc:
        raise CommandError(f"{url}: {type(exc).__name__}") from None
    if status != 200:
        raise CommandError(f"{url}: HTTP {status}")
    emit(args, HealthcheckResult(url=url, status=status), f"{url}: ok")
    return 0
