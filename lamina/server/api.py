"""What the HTTP server consumes: one request handler, and a lease on the monitor template.

:class:`lamina.api.router.Router` satisfies :class:`Handler`: it turns every
:class:`~lamina.api.http.Request` into a :class:`~lamina.api.http.Response` and never raises
for request-level failures.  The server only adds HTTP/1.1 framing around it (the handler
never sees hop-by-hop headers such as ``Transfer-Encoding`` or ``Connection`` on the way out:
the server sets them).
"""

from __future__ import annotations

from typing import Protocol

from lamina.api.http import Request, Response

__all__ = ["Handler", "TemplateLease"]


class Handler(Protocol):
    def handle(self, request: Request) -> Response:
        """Answer ``request``.  ``request.body`` (a file-like object, or None when the request
        has no body) is read from the connection as the handler reads it, possibly from
        another thread and possibly after ``handle`` returned a streaming response; the
        response's ``body`` iterator is closed when the client goes away."""


class TemplateLease(Protocol):
    """A hold on the container monitors' template (what
    :meth:`~lamina.services.containers.lifecycle.ContainerLifecycleImpl.monitor_template_lease`
    returns): the template does not leave while it is open."""

    pid: int

    def wait(self) -> None:
        """Block until the template went away or the lease was closed."""

    def close(self) -> None:
        """End the lease (from any thread: a :meth:`wait` returns)."""

    def __enter__(self) -> TemplateLease: ...

    def __exit__(self, *exc_info: object) -> None: ...
