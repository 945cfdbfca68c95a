"""The README's support matrix, generated from each adapter's `capabilities` (never typed by hand)."""

from __future__ import annotations

from adapters.base import Capability
from adapters.registry import load_registry

BEGIN = "<!-- support-matrix:begin -->"
END = "<!-- support-matrix:end -->"


def render() -> str:
    registry = load_registry()
    slugs = sorted(registry)
    lines = [
        "| capability | " + " | ".join(registry[s].display_name for s in slugs) + " |",
        "|---|" + "---|" * len(slugs),
    ]
    for cap in Capability:
        cells = ["yes" if cap in registry[s].capabilities else "no" for s in slugs]
        lines.append(f"| `{cap.value}` | " + " | ".join(cells) + " |")
    budgets = [" and ".join(f"{r.burst} + {r.per_second:g}/s" for r in registry[s].rate_limits) for s in slugs]
    lines.append("| request budget per account (burst + rate) | " + " | ".join(budgets) + " |")
    calls = [str(registry[s].min_booking_calls) if Capability.BOOK in registry[s].capabilities else "-" for s in slugs]
    lines.append("| EMR calls per booking (warm catalog) | " + " | ".join(calls) + " |")
    batches = [str(registry[s].patient_batch_size) for s in slugs]
    lines.append("| patients per read (change detection's `patient_batch_size`) | " + " | ".join(batches) + " |")
    complete = ["yes" if registry[s].full_listing_complete else "no" for s in slugs]
    lines.append("| `sync --full` stores every appointment (`full_listing_complete`) | " + " | ".join(complete) + " |")
    lines.append("| verified against | " + " | ".join(registry[s].verified_against for s in slugs) + " |")
    return "\n".join(lines)


def block() -> str:
    return f"{BEGIN}\n{render()}\n{END}"
