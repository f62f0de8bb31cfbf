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
]


class LaminaError(Exception):
    """Base of every lamina error; the message is meant for the user.

    ``kind`` names the kind in the monitor's and the init's error answers: the kind's class
    name in snake case (``NotFound`` -> ``not_found``), set for the kinds defined here; a
    subclass defined elsewhere is of its base's kind."""

    kind = "unknown"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__module__ == __name__:
            cls.kind = "".join(f"_{letter}" if letter.isupper() and index else letter
                               for index, letter in enumerate(cls.__name__)).lower()


class NotFound(LaminaError):
    """The named object (image, layer, container, ...) does not exist."""


class AlreadyExists(LaminaError):
    """An object with that name or identity exists already."""


class InvalidArgument(LaminaError):
    """The request or its input (a reference, an archive, JSON) is malformed."""


class Conflict(LaminaError):
    """The request conflicts with the current state (e.g. an image in use)."""


class Forbidden(LaminaError):
    """The operation is never allowed on this object (e.g. removing a pre-defined network), or a
    peer (a registry) refuses it to these credentials."""

    kind = "forbidden"


class FailedPrecondition(LaminaError):
    """The system is not in a state where the operation can run (e.g. no usable driver)."""


class Unavailable(LaminaError):
    """A service the operation needs is not available (e.g. not a swarm manager)."""


class DataLoss(LaminaError):
    """Stored data is damaged: a digest does not verify, a record is incomplete."""


class NotImplemented(LaminaError):  # noqa: A001 - the kind's name, used as errdefs.NotImplemented
    """lamina does not implement the requested feature."""


class System(LaminaError):
    """The host refused an operation (permissions, disk full, a failed syscall)."""


class Cancelled(LaminaError):
    """The operation was interrupted (a client went away, a signal)."""


class Unauthorized(LaminaError):
    """A peer (a registry) wants credentials, or refused the ones given."""


