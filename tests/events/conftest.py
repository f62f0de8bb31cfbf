"""The engine fixture of the service tests (an engine on its own roots, busybox loaded)."""

from services.conftest import engine  # noqa: F401 - re-exported fixture
