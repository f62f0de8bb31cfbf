"""Moving images in and out: ``docker save`` archives and OCI layouts (registry client later)."""

__all__: list[str] = []
