"""``lamina serve``: the Docker Engine API router on unix sockets, over HTTP/1.1 (h11).

* :mod:`lamina.server.api` — what the server consumes: a :class:`~lamina.server.api.Handler`
  (``handle(request) -> response``, the router's one method).
* :mod:`lamina.server.listener` — binding a unix socket safely (refusing a live one, removing
  a stale one, mode and group).
* :mod:`lamina.server.connection` — one HTTP/1.1 connection: keep-alive, streamed request
  bodies, chunked streaming responses, hijacking.
* :mod:`lamina.server.splice` — the byte pump between a hijacked connection and a duplex.
* :mod:`lamina.server.server` — the accept loop, the connection threads, signals and shutdown.

Importing this package module loads nothing else (the CLI imports the submodules it needs).
"""

__all__: list[str] = []
