"""Container runtimes: the contract (:mod:`lamina.runtime.api`), the registry of runtimes by
name (:mod:`lamina.runtime.registry`), lamina's own runtime (:mod:`lamina.runtime.native`) and
the OCI runtimes crun and runc (:mod:`lamina.runtime.oci`), over the cgroup code
(:mod:`lamina.runtime.cgroups`), which no code outside this package uses: callers reach a
container's cgroup through the :class:`~lamina.runtime.api.Runtime` methods.

Nothing is imported here: ``import lamina.runtime.api`` must stay cheap.
"""
