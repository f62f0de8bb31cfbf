"""Error kinds shared by every layer of lamina.

Each error is a subclass of :class:`LaminaError` whose class says *what kind* of failure it
is; the message says *what* failed.  Lower layers translate OS and library exceptions into
these kinds at their boundary (``raise NotFound(...) from exc``).  The API layer maps the kinds
to HTTP status codes in one table (``lamina.api.errors``); the CLI maps HTTP statuses to exit
codes.  Nothing else inspects exception types.
"""

from __future__ import annotations

__all__ = [
    "LaminaError",
    "NotFound",
    "AlreadyExists",
    "InvalidArgument",
    "Forbidden",
    "Conflict",
    "FailedPrecondition",
    "Unavailable",
    "DataLoss",
    "NotImplemented",
    "System",
    "Cancelled",
    "Unauthorized",
    "Forbidden",
]


class LaminaError(Exception):
    """Base of every lamina error; the message is meant for the user."""

    kind = "unknown"


class NotFound(LaminaError):
    """The named object (image, layer, container, ...) does not exist."""

    kind = "not_found"


class AlreadyExists(LaminaError):
    """An object with that name or identity exists already."""

    kind = "already_exists"


class InvalidArgument(LaminaError):
    """The request or its input (a reference, an archive, JSON) is malformed."""

    kind = "invalid_argument"


class Conflict(LaminaError):
    """The request conflicts with the current state (e.g. an image in use)."""

    kind = "conflict"


class Forbidden(LaminaError):
    """The operation is never allowed on this object (e.g. removing a pre-defined network)."""

    kind = "forbidden"


class FailedPrecondition(LaminaError):
    """The system is not in a state where the operation can run (e.g. no usable driver)."""

    kind = "failed_precondition"


class Unavailable(LaminaError):
    """A service the operation needs is not available (e.g. not a swarm manager)."""

    kind = "unavailable"


class DataLoss(LaminaError):
    """Stored data is damaged: a digest does not verify, a record is incomplete."""

    kind = "data_loss"


class NotImplemented(LaminaError):  # noqa: A001 - the kind's name, used as errdefs.NotImplemented
    """lamina does not implement the requested feature."""

    kind = "not_implemented"


class System(LaminaError):
    """The host refused an operation (permissions, disk full, a failed syscall)."""

    kind = "system"


class Cancelled(LaminaError):
    """The operation was interrupted (a client went away, a signal)."""

    kind = "cancelled"


class Unauthorized(LaminaError):
    """A peer (a registry) wants credentials, or refused the ones given."""

    kind = "unauthorized"


class Forbidden(LaminaError):
    """A peer (a registry) refuses the operation to these credentials."""

    kind = "forbidden"
