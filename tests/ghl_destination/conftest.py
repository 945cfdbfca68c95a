"""GoHighLevel-as-a-destination tests drive the gateway + Cliniko emulator harness of tests/gateway, on both
storage backends, with the GHL emulator as the destination."""

from tests.gateway.conftest import harness  # noqa: F401  (the fixture, shared)
