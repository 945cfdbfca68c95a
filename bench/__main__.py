"""`python -m bench [options]`: run every benchmark in turn; options are passed to each (see `--help`)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from bench import ghl_push, memory, overhead, polling_budget, sync_efficiency, webhooks

# Every benchmark gets the same options; webhooks ignores those only overhead knows (--full, --concurrency, …).
BENCHMARKS: dict[str, Callable[[Sequence[str]], int]] = {"overhead": overhead.main, "webhooks": webhooks.main_shared}
BENCHMARKS["sync_efficiency"] = sync_efficiency.main_shared  # ignores the options only others know
BENCHMARKS["polling_budget"] = polling_budget.main_shared  # ~11 min: one Cliniko account, derived intervals
BENCHMARKS["ghl_push"] = ghl_push.main_shared  # ~2.5 min: backfill and steady state into GoHighLevel
BENCHMARKS["memory"] = memory.main_shared  # 100 000 requests per backend by default (~30 min each)


def main(argv: Sequence[str]) -> int:
    status = 0
    for name, run in BENCHMARKS.items():
        print(f"== {name}", flush=True)
        status = run(argv) or status
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
