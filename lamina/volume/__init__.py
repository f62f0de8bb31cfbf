"""Volumes: data that lives outside the union filesystem, shared by containers.

Submodules (import them directly; this package imports nothing eagerly):

- :mod:`lamina.volume.api` — the vocabulary, the ``VolumeDriver`` protocol, the ``Volume`` record.
- :mod:`lamina.volume.local` — the ``local`` driver (``<data-root>/volumes/<name>/_data``).
- :mod:`lamina.volume.store` — ``VolumeStore``: drivers by name, references, the lock.
- :mod:`lamina.volume.parse` — ``-v`` / ``--mount`` / ``--tmpfs`` / ``--volumes-from`` parsers, ``MountPoint``.
- :mod:`lamina.volume.resolve` — ``resolve_mounts`` and a stored container's mount points.
- :mod:`lamina.volume.populate` — copy-up of the image's files into an empty volume.
"""

__all__: list[str] = []
