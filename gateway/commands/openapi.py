"""`emr-gateway openapi`: print the OpenAPI document generated from the app (what openapi/openapi.json holds)."""

from __future__ import annotations

import argparse
import json
import sys

from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.crypto import Keyring


def document() -> str:
    app = create_app(GatewayConfig(), Keyring.generate())
    return json.dumps(app.openapi_schema.to_schema(), indent=2, sort_keys=True) + "\n"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("openapi", help="print the OpenAPI document")
    p.add_argument("--json", action="store_true", help="the output is JSON either way")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(document())
    return 0
