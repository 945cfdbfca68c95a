"""`emr-gateway`: one console script; each subcommand lives in gateway.commands.<name> and registers itself."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from sqlalchemy.exc import OperationalError

from gateway.commands import CommandError, Subparsers, demo, keys, locations, migrate, openapi, rotate, serve
from gateway.crypto import DecryptError, KeyringError
from gateway.storage.errors import StorageError
from gateway.storage.urls import DatabaseURLError

PROG = "emr-gateway"

# Explicit, ordered, and the only place a command is wired in: `--help` lists them in this order.
COMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    serve.register,
    demo.register,
    migrate.register,
    locations.register,
    keys.register,
    rotate.register,
    openapi.register,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="EMR Gateway: one API for booking in many EMRs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in COMMANDS:
        register(sub)
    return parser


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
