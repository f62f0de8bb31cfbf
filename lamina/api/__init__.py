"""The Docker Engine API: router, handlers per resource, error table, stream framing.

Import :mod:`lamina.api.router` for :class:`~lamina.api.router.Router`; this package module
stays empty so that importing a submodule (``lamina.api.http``) does not pull in the rest.
"""

__all__: list[str] = []
