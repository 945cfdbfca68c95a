"""`emr-gateway`: one console script; each subcommand lives in gateway.commands.<name> and registers itself."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from sqlalchemy.exc import OperationalError

from gateway.commands import CommandError, Subparsers
from gateway.crypto import DecryptError, KeyringError
from gateway.storage.errors import StorageError
from gateway.storage.urls import DatabaseURLError

PROG = "emr-gateway"

# Explicit, ordered, and the only place a command is wired in: command name -> the module whose `register(sub)`
# adds it; `--help` lists them in this order. Only the invoked command's module is imported, so the admin
# commands start without loading the web app and the emulators.
COMMANDS: dict[str, str] = {
    "serve": "gateway.commands.serve",
    "worker": "gateway.commands.worker",
    "demo": "gateway.commands.demo",
    "migrate": "gateway.commands.migrate",
    "locations": "gateway.commands.locations",
    "keys": "gateway.commands.keys",
    "operators": "gateway.commands.operators",
    "sync": "gateway.commands.sync",
    "ghl-tokens": "gateway.commands.ghl_tokens",
    "ghl-link": "gateway.commands.ghl_tokens",
    "ghl": "gateway.commands.ghl",
    "rotate-master-key": "gateway.commands.rotate",
    "generate-master-key": "gateway.commands.rotate",
    "healthcheck": "gateway.commands.healthcheck",
    "openapi": "gateway.commands.openapi",
    "support-matrix": "gateway.commands.matrix",
}


def _modules_for(argv: Sequence[str]) -> list[str]:
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    if first in COMMANDS:
        return [COMMANDS[first]]
    return list(dict.fromkeys(COMMANDS.values()))  # --help or a typo: argparse then lists every command


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="EMR Gateway: one API for booking in many EMRs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _modules_for(argv):
        register: Callable[[Subparsers], None] = importlib.import_module(name).register
        register(sub)
    return parser


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except CommandError as exc:
        return _fail(str(exc), exc.code)
    except (KeyringError, DatabaseURLError) as exc:
        return _fail(str(exc), 2)
    except (DecryptError, StorageError) as exc:
        return _fail(str(exc), 1)
    except OperationalError as exc:
        # The driver's own first line says why (refused, unknown host, no such file); never the parameters.
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        return _fail(f"database unavailable: {reason}", 1)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
