"""The container service: Docker's container endpoints on top of the container store, the
read-write layers, the per-container monitors and the runtimes, split as Docker's container
router sees its backends (``services/api.py``):

* :mod:`.lifecycle` - create, start, stop, kill, restart, remove, wait, pause, unpause,
  update, rename, prune, and (from its base in :mod:`.recovery`, what a crash leaves)
  :meth:`~.recovery.ContainerRecovery.boot`;
* :mod:`.views` - inspect, list and its filters, top, stats;
* :mod:`.files` - changes, export, ``docker cp``'s archive endpoints, commit;
* :mod:`.streams` - attach, logs, resize.

What they share lives in :mod:`.common`: one :class:`~.common.ContainerShared` per engine (the
stores, the runtimes, attaches waiting for a start) and the plumbing every group uses
(:class:`~.common.ContainerGroup`: looking a container up, recording a dead monitor's run,
reading the run-time state); every group reaches the monitors through one
:class:`~lamina.container.monitor.client.MonitorClient`.

State lives in three places (see each module's docstring): the record in
``<data-root>/containers/<id>/`` (:mod:`lamina.container.store`), the read-write layer in
``layerdb/mounts/<id>`` (:mod:`lamina.layer.mounts`), and the run-time state under
``<exec-root>/containers/<id>/`` (:mod:`lamina.container.rundir`), which the container's monitor
(:mod:`lamina.container.monitor`) owns while it lives.  This service never waits for a
container by polling its record: it waits on the exit record the monitor publishes (see
:class:`~lamina.container.rundir.RunLock`).

A record that says Running while no monitor holds ``monitor.lock`` belongs to a monitor that
died (a crash, a reboot, ``kill -9``): the first operation that meets it releases what the run
left (processes in its cgroup, the rootfs mount, the cgroups) and records the container as
exited with code 255, as Docker does for containers it finds dead at start-up.
:meth:`~.recovery.ContainerRecovery.boot` does this for every container and restarts
those with the restart policy ``always`` (and ``unless-stopped`` when not stopped by hand).

Events (Docker's, type ``container``, see :mod:`lamina.events.message` for the attributes):
this service emits ``create``, ``attach``, ``kill`` (``signal``, for every signal sent),
``stop``, ``restart``, ``pause``, ``unpause``, ``rename`` (``oldName``), ``resize``,
``update``, ``commit``, ``destroy``, ``prune``, and ``die`` (255) for a run whose monitor
died; the monitor emits ``start``, ``oom``, ``die`` and the ``destroy`` of ``--rm``.

The package imports none of its modules: each consumer imports the group it uses (``lamina
images`` loads none of them, ``lamina run`` not the views or files).
"""
