"""The registry HTTP client (:mod:`.client`) and its authentication (:mod:`.auth`); httpx is
imported only by the commands that talk to a registry."""

__all__: list[str] = []
