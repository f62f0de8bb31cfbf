"""Engine services: one small class per resource, wired by :func:`lamina.services.compose.build_services`."""

__all__: list[str] = []
