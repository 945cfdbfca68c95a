"""`emr-gateway support-matrix`: print (or write into README.md) the matrix generated from adapters' capabilities."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from adapters.registry import load_registry
from gateway.support_matrix import BEGIN, END, block, render


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("support-matrix", help="print the EMR support matrix generated from code")
    p.add_argument("--write", metavar="README", nargs="?", const="README.md", help="replace the matrix in a README")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.json:
        registry = load_registry()
        print(json.dumps({s: sorted(c.value for c in cls.capabilities) for s, cls in sorted(registry.items())}))
        return 0
    if args.write:
        path = Path(args.write)
        text = path.read_text()
        start, end = text.index(BEGIN), text.index(END) + len(END)
        path.write_text(text[:start] + block() + text[end:])
        return 0
    print(render())
    return 0
