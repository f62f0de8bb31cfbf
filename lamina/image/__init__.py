"""Images: references and their normalisation, the imagedb, repositories.json, image configs.

Submodules (import them directly; this package imports nothing eagerly, to keep start-up fast):

- :mod:`lamina.image.reference` — Docker's reference grammar, ``parse_normalized_named``.
- :mod:`lamina.image.store` — ``ImageStore``, configs by image id under ``imagedb/``.
- :mod:`lamina.image.refstore` — ``ReferenceStore``, Docker's ``repositories.json``.
- :mod:`lamina.image.config` — ``ImageConfig`` and Docker-identical serialisation of new configs.
- :mod:`lamina.image.changes` — ``apply_changes`` for ``--change`` (import/commit).
- :mod:`lamina.image.gojson` — JSON bytes as Go's ``encoding/json`` writes them.
- :mod:`lamina.image.api` — the ``ImageConfigs`` and ``References`` protocols, and the vocabulary.
"""

__all__: list[str] = []
