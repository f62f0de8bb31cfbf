"""The one table from error kinds to HTTP statuses, and Docker's error body.

=====================  ======  ==============================================================
errdefs kind           status  why
=====================  ======  ==============================================================
InvalidArgument        400     Docker: ``errdefs.IsInvalidParameter`` -> 400
NotFound               404     Docker: ``errdefs.IsNotFound`` -> 404
AlreadyExists          409     Docker maps containerd's AlreadyExists to 409 Conflict
Conflict               409     Docker: ``errdefs.IsConflict`` -> 409
FailedPrecondition     412     Docker maps containerd's FailedPrecondition to 412
NotImplemented         501     Docker: ``errdefs.IsNotImplemented`` -> 501
Unavailable            503     Docker: ``errdefs.IsUnavailable`` -> 503
DataLoss               500     Docker: DataLoss, System, Unknown, Cancelled -> 500
System                 500
Cancelled              500     (nginx's 499 is not a standard status; Docker sends 500)
Unauthorized           401     Docker: ``errdefs.IsUnauthorized`` -> 401 (a registry's 401)
Forbidden              403     Docker: ``errdefs.IsForbidden`` -> 403 (a registry's 403)
anything else          500     message ``internal error: <type>: <text>``, traceback logged
=====================  ======  ==============================================================

The body of an error response is Docker's ``{"message": "..."}``.  A traceback never goes to
the client: exceptions that are not :class:`lamina.errdefs.LaminaError` are logged with their
traceback at ERROR level and answered with a one-line message.
"""

from __future__ import annotations

import json

from lamina import errdefs
from lamina.log import get_logger

__all__ = ["STATUS_BY_KIND", "status_for", "message_for", "error_body", "log_unexpected"]

logger = get_logger("lamina.api")

STATUS_BY_KIND: dict[type[errdefs.LaminaError], int] = {
    errdefs.InvalidArgument: 400,
    errdefs.Forbidden: 403,
    errdefs.NotFound: 404,
    errdefs.AlreadyExists: 409,
    errdefs.Conflict: 409,
    errdefs.FailedPrecondition: 412,
    errdefs.NotImplemented: 501,
    errdefs.Unavailable: 503,
    errdefs.DataLoss: 500,
    errdefs.System: 500,
    errdefs.Cancelled: 500,
    errdefs.Unauthorized: 401,
    errdefs.Forbidden: 403,
}


def status_for(exc: BaseException) -> int:
    """The HTTP status for an exception, by its errdefs kind (subclasses inherit the kind)."""
    for kind in type(exc).__mro__:
        status = STATUS_BY_KIND.get(kind)  # type: ignore[call-overload]
        if status is not None:
            return status
    return 500


def message_for(exc: BaseException) -> str:
    """The message sent to the client: the error's own text for errdefs kinds."""
    if isinstance(exc, errdefs.LaminaError):
        text = str(exc)
        return text if text else (type(exc).__doc__ or type(exc).__name__).strip()
    return f"internal error: {type(exc).__name__}: {exc}"


def error_body(message: str) -> bytes:
    """The JSON error body.  A message quoting the client's own bytes that are not UTF-8 (a
    name from a command line, kept by Python as lone surrogates) shows them as U+FFFD, as Go's
    encoder does."""
    body = json.dumps({"message": message}, ensure_ascii=False, separators=(",", ":"))
    try:
        return body.encode() + b"\n"
    except UnicodeEncodeError:
        import re

        return re.sub("[\ud800-\udfff]", "\ufffd", body).encode() + b"\n"


def log_unexpected(exc: BaseException, context: str) -> None:
    """Log what a client will only see as a one-line message (tracebacks stay server-side)."""
    if isinstance(exc, errdefs.LaminaError):
        logger.debug("%s: %s: %s", context, type(exc).__name__, exc)
    else:
        logger.error("%s: unexpected %s: %s", context, type(exc).__name__, exc, exc_info=exc)
