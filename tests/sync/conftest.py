"""Change-detection tests drive the gateway + Cliniko emulator harness of tests/gateway on both storage backends."""

from tests.gateway.conftest import harness  # noqa: F401  (the fixture, shared)
