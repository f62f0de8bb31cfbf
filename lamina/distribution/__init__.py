"""Moving images in and out: ``docker save`` archives and OCI layouts (:mod:`.load`,
:mod:`.save`), registries (:mod:`.pull`, :mod:`.push`, :mod:`.registry`) and Docker's
distribution metadata (:mod:`.metadata`)."""

__all__: list[str] = []
