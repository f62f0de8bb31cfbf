"""Exit codes of the ``lamina`` command: one table, from the HTTP status of the failure.

====  =====================================================================================
code  meaning
====  =====================================================================================
0     success
1     generic failure; the daemon answered 500 (or another 5xx not listed below)
2     usage error: unknown command or option, bad --format template (argparse uses 2 too)
3     400 bad request: invalid argument, malformed input (a bad reference, a broken archive)
4     404 not found: no such image (or a local input file that does not exist)
5     409 conflict: the name exists already, the image is in use
6     412 precondition failed, or any other 4xx
7     501 not implemented in lamina
8     503 unavailable
9     the daemon could not be reached (no socket, connection refused, broken connection)
10    rootless set-up failed: no newuidmap/newgidmap, no /etc/subuid or /etc/subgid range,
      XDG_RUNTIME_DIR unset or not the user's (:mod:`lamina.rootless`)
130   interrupted (Ctrl-C)
====  =====================================================================================

Errors the daemon reports print as ``Error response from daemon: <message>`` on stderr, like
docker; errors found by the CLI itself print as ``Error: <message>``.  Errors the CLI finds
use the same table: it maps their :mod:`lamina.errdefs` kind to the status the API would
have answered (a missing input file is a 404 -> 4).
"""

from __future__ import annotations

__all__ = [
    "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_BAD_REQUEST", "EXIT_NOT_FOUND", "EXIT_CONFLICT",
    "EXIT_REJECTED", "EXIT_NOT_IMPLEMENTED", "EXIT_UNAVAILABLE", "EXIT_CONNECTION",
    "EXIT_ROOTLESS", "EXIT_INTERRUPTED", "EXIT_CODES_HELP", "exit_code_for_status", "CommandError", "UsageError",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_BAD_REQUEST = 3
EXIT_NOT_FOUND = 4
EXIT_CONFLICT = 5
EXIT_REJECTED = 6
EXIT_NOT_IMPLEMENTED = 7
EXIT_UNAVAILABLE = 8
EXIT_CONNECTION = 9
EXIT_ROOTLESS = 10
EXIT_INTERRUPTED = 130

_BY_STATUS = {
    400: EXIT_BAD_REQUEST,
    404: EXIT_NOT_FOUND,
    409: EXIT_CONFLICT,
    412: EXIT_REJECTED,
    501: EXIT_NOT_IMPLEMENTED,
    503: EXIT_UNAVAILABLE,
}

EXIT_CODES_HELP = """\
exit codes:
  0  success                          5  conflict (409)
  1  failure (500, other errors)      6  precondition failed / other 4xx
  2  usage error                      7  not implemented (501)
  3  bad request (400)                8  unavailable (503)
  4  not found (404)                  9  cannot connect to the daemon
                                     10  rootless set-up failed (newuidmap, subuid, XDG_RUNTIME_DIR)"""


def exit_code_for_status(status: int) -> int:
    """The exit code for an HTTP error status (0 for 2xx; status 0 means no connection)."""
    if 200 <= status < 300:
        return EXIT_OK
    if status == 0:
        return EXIT_CONNECTION
    code = _BY_STATUS.get(status)
    if code is not None:
        return code
    if 400 <= status < 500:
        return EXIT_REJECTED
    return EXIT_FAILURE


class CommandError(Exception):
    """A failure found by the CLI itself; printed as ``Error: <message>``."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class UsageError(CommandError):
    """The command line is wrong (exit code 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)
