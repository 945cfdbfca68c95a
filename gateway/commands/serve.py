"""`emr-gateway serve`: run the API under uvicorn."""

from __future__ import annotations

import argparse
import os

import uvicorn

from gateway.app import create_app
from gateway.config import load_config
from gateway.crypto import Keyring
from gateway.logging_setup import configure_logging
from gateway.storage.migrate import upgrade


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the HTTP API")
    p.add_argument("--host", default=os.environ.get("EGW_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("EGW_PORT", "8000")))
    p.add_argument("--migrate", action="store_true", help="apply pending migrations before starting")
    p.add_argument("--json", action="store_true", help="accepted for symmetry; serve prints logs only")
    p.add_argument(
        "--no-worker",
        action="store_true",
        help="serve the API only; run `emr-gateway worker` separately for webhook delivery and change detection",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    configure_logging()
    config = load_config()
    keyring = Keyring.from_env()
    if args.migrate:
        upgrade(config.database_url)
    app = create_app(config, keyring, worker=not args.no_worker, freeze_heap=True)
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="warning", lifespan="on")
    return 0
