"""Engine events: Docker's event messages, recorded by every process that changes state.

:mod:`lamina.events.api` holds the :class:`~lamina.events.api.EventSink` protocol the stores and
services emit through and the message vocabulary; :mod:`lamina.events.log` the append-only
event log shared by processes; :mod:`lamina.events.filters` Docker's event filters.  This
package module stays empty so that emitting an event imports only what emitting needs.
"""

__all__: list[str] = []
