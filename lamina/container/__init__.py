"""Containers: the store of container records, their logs and their lifecycle."""

__all__: list[str] = []
