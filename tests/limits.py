"""EMR budgets out of reach, for tests that are not about pacing (the adapters' real budgets would slow them).

Practice Better keeps its real budget: its emulator enforces the documented 5 requests/s (bursts of 20), so
without pacing a busy test would be answered 429, as a real practice would be.
"""

from __future__ import annotations

from adapters.pacing import RateLimit
from adapters.registry import BUILTIN

UNPACED: dict[str, tuple[RateLimit, ...]] = {
    slug: (RateLimit(per_second=100_000.0, burst=100_000),) for slug in BUILTIN if slug != "practicebetter"
}
