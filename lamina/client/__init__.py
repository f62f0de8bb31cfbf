"""Engine API clients: transports (in-process, unix socket) and the typed APIClient.

Import :mod:`lamina.client.client` and :mod:`lamina.client.transport` directly; this package
module stays empty so that nothing heavy is loaded by importing it.
"""

__all__: list[str] = []
