"""Graph drivers: where layer directories live and how they are stacked (overlay2, vfs).

The contract is :mod:`lamina.graphdriver.api`; drivers are :mod:`.overlay2` and :mod:`.vfs`,
diffs by tree comparison are :mod:`.naivediff`, the chowned layer copies of ``--userns-remap``
where idmapped mounts are missing are :mod:`.remapcopy`, and :mod:`.registry` chooses a driver
for a data root.  Import those modules directly; this package imports nothing so that importing the
contract stays cheap.
"""

__all__: list[str] = []
