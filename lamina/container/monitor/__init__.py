"""The per-container monitor: one process per running container, like conmon or containerd-shim.

The monitor is the parent of the container's PID 1 (and of its execs), writes its json-file
log, records its exits, applies its restart policy and cleans up after it (unmount, cgroup
removal, ``--rm``).  The CLI and the server can exit and restart without touching it.

Modules (one contract, one client, the server split by concern, as containerd's shim):

- :mod:`~lamina.container.monitor.protocol`: the wire format, both ends (its docstring is the
  contract: the answer pipe, the attach and control sockets, errors <-> :mod:`lamina.errdefs`);
- :mod:`~lamina.container.monitor.client`: :func:`spawn` and :class:`MonitorClient`, the only
  code above the monitor that opens its sockets or reads its run directory (it hands out the
  exit record, :class:`~lamina.container.rundir.RunLock`, to wait on);
- :mod:`~lamina.container.monitor.api`: :class:`MonitorRecipe`, what the starter hands over,
  and :class:`MonitorContext`, what the template makes of it;
- :mod:`~lamina.container.monitor.template`: the monitor template, one small process per exec
  root that forks every monitor (why: its docstring);
- :mod:`~lamina.container.monitor.bootstrap`: the monitor's clean slate after that fork;
- :mod:`~lamina.container.monitor.server`: the monitor process (locks, signals, sockets,
  clients);
- :mod:`~lamina.container.monitor.launch`: the start of a run in a helper process;
- :mod:`~lamina.container.monitor.run`: one run after another, the exit record, the restart
  policy (:func:`~lamina.container.monitor.policy.restart_decision`);
- :mod:`~lamina.container.monitor.execs`: exec sessions;
- :mod:`~lamina.container.monitor.io`: the event loop and stdio copying.

For each run the monitor (steps 1 and 3 in a short-lived helper process it forks,
:mod:`~lamina.container.monitor.launch`):

1. mounts the root filesystem (:meth:`MountStore.mount`), writes ``containers/<id>/{hostname,
   hosts,resolv.conf}`` and builds the :class:`ContainerSpec` (:mod:`lamina.container.spec`);
2. prepares stdio: pipes for stdout/stderr, a pipe for stdin with ``OpenStdin`` (else
   /dev/null), or one pty for all three with ``Tty`` (the monitor keeps the master);
3. calls ``runtime.start``: it becomes the parent of the container's PID 1, records ``State``
   (Running, Pid, StartedAt) and ``runtime.json``, and answers the starter on the answer pipe;
4. copies the container's output to its json-file log and to attached clients, feeds
   attached clients' input to the container's stdin, serves the attach and control sockets,
   and reaps with ``waitpid`` (woken by SIGCHLD through ``signal.set_wakeup_fd``);
5. at exit: drains the output, records ExitCode (128 + n for signal n), FinishedAt, OOMKilled
   (from the cgroup), kills what is left in the cgroup, ``runtime.delete``, unmounts the root
   filesystem, then applies the restart policy (``no``, ``on-failure[:N]``, ``always``,
   ``unless-stopped``; Docker's back-off: 100 ms doubling up to 1 min, reset after a run of
   10 s; a manual stop or kill sets ``HasBeenManuallyStopped``, which stops every policy) and
   ``AutoRemove``.  A failed start rolls back the same way.  Each exit is published in the
   run directory's exit record (:mod:`lamina.container.rundir`).

The run of a ``--rm`` (``AutoRemove``) container is disposable: its root filesystem is mounted
``volatile`` and its start and exit are recorded atomically but not synced (no fsync, no sync
of the backing filesystem at the unmount).  After a host crash such a container is removed at
start-up, or is still "created" if its start never reached the disk.

Events (through ``MonitorContext.events``, see :mod:`lamina.events`): per run, the volume
``mount`` events and the container's ``start``; at its end ``oom`` (when the cgroup saw an
OOM kill), ``die`` (``exitCode``, ``execDuration`` in seconds) and the volume ``unmount``
events, written before waiters of the exit are woken; ``destroy`` after a ``--rm`` removal;
``exec_die`` (``execID``, ``exitCode``) when an exec ends.
"""

from __future__ import annotations

from lamina.lazyexports import lazy_exports

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from lamina.container.monitor.api import (MonitorContext, MonitorRecipe, MonitorStores, MonitorVolumes,
                                              PendingAttach)
    from lamina.container.monitor.client import MonitorClient, spawn
    from lamina.container.monitor.protocol import ERROR_KINDS, StartError, exit_code_of_start_error
    from lamina.container.rundir import ExitInfo, RunLock

__all__ = [
    "ERROR_KINDS",
    "ExitInfo",
    "MonitorClient",
    "MonitorContext",
    "MonitorRecipe",
    "MonitorStores",
    "MonitorVolumes",
    "PendingAttach",
    "RunLock",
    "StartError",
    "exit_code_of_start_error",
    "spawn",
]

# public name -> the module that defines it (of this package, or the run directory's): the
# package imports none of them until a name is read (``ps`` of a running container reads the
# run directory alone, through the client)
_HOMES = {
    **dict.fromkeys(("ERROR_KINDS", "StartError", "exit_code_of_start_error"), "protocol"),
    **dict.fromkeys(("MonitorClient", "spawn"), "client"),
    **dict.fromkeys(("MonitorContext", "MonitorRecipe", "MonitorStores", "MonitorVolumes", "PendingAttach"), "api"),
    **dict.fromkeys(("ExitInfo", "RunLock"), "lamina.container.rundir"),
}


__getattr__, __dir__ = lazy_exports(__name__, _HOMES, __all__)
