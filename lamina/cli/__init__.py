"""The ``lamina`` command line (entry point :func:`lamina.cli.main.main`).

The CLI is a Docker Engine API client: commands call :class:`lamina.client.client.APIClient`
and never import :mod:`lamina.services`.  This package module stays empty so that
``lamina --help`` imports as little as possible.
"""

__all__: list[str] = []
