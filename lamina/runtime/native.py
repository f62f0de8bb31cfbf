"""The native runtime: containers from namespaces, mounts, cgroups, capabilities and seccomp,
set up by lamina itself in a forked child, with no external binary.

Process model (:meth:`NativeRuntime.start`).  The caller must end up as the *parent* of the
container's PID 1, so that it reaps it with ``waitpid``.  ``unshare(CLONE_NEWPID)`` never
moves the calling thread; it only makes the *next* child of that thread the first process
(PID 1) of a new pid namespace.  So the caller:

1. creates the container's cgroups and gets the compiled seccomp program (parent side, before
   fork; see :class:`lamina.runtime.seccomp.ProgramCache`);
2. ``unshare(CLONE_NEWPID)``, ``fork()``, then ``setns()`` back to its own pid namespace (an
   open ``/proc/self/ns/pid``), so its later children are ordinary again; the child is PID 1
   of the new namespace and the caller is its parent: no double fork, no subreaper needed;
3. reads the child's status pipe until EOF.

The child (PID 1, :func:`lamina.runtime.child.container_child`) joins the namespaces named by
``spec.namespace_paths`` and ``spec.network_namespace`` (another container's: opened by the
caller before fork; a joined pid namespace is entered by the caller's ``setns`` around the
fork, as for exec, and the child is then not PID 1), unshares the mount, uts, ipc, net
(unless ``network="host"`` or joined) namespaces, makes ``/`` rprivate, bind-mounts the rootfs onto
itself, builds the container's filesystem view (:mod:`lamina.runtime.rootfs`), sets the
hostname, brings ``lo`` up, pivots into the rootfs, masks and write-protects Docker's paths,
remounts the root read-only when asked, joins the cgroups and ``execve``\\ s the command (the
steps and the status pipe protocol between child and parent are in
:mod:`lamina.runtime.child`).  Errors come back from :meth:`start`/:meth:`exec` as :mod:`lamina.errdefs` errors;
a command that cannot be run is an :class:`ExecError` with Docker's message and exit code
(127 not found, 126 not executable).

With ``spec.init`` PID 1 is :func:`lamina.runtime.init.run_init`: it forks the command,
forwards signals and reaps zombies.  Without it PID 1 is the command itself, which the kernel
protects from every signal it has no handler for (SIGKILL from the host excepted).

A spec with ``uid_mappings``/``gid_mappings`` and ``user`` in its namespaces
(``--userns-remap``) takes one more process: an intermediate enters the user namespace and
forks PID 1 of a pid namespace that belongs to it; the caller becomes a child subreaper and
PID 1 is reparented to it (:mod:`lamina.runtime.userns`).  Such a container joins no other
container's pid, ipc or uts namespace (``namespace_paths``).

:meth:`NativeRuntime.exec` joins a running container in two processes, so that nothing
appears in the container's pid namespace before it holds only the exec's privileges (a
container with ``CAP_SYS_PTRACE`` passes the non-dumpable flag and could attach to it): the
caller, a child subreaper, forks a first process outside that namespace, which joins the
ipc, uts, net, cgroup and mount namespaces of the container's PID 1 and, last, its user
namespace if it has one of its own, makes its pid namespace the one of its children, drops
to the exec's privileges (as above from the rlimits on), forks the exec's process and exits;
the caller inherits that process, moves it into the container's cgroups and lets it
``execve`` (:func:`lamina.runtime.forking.fork_exec`).
:meth:`~NativeRuntime.exec` and :meth:`~NativeRuntime.kill` first check that ``state.pid``
is still a member of the container's cgroup, so a pid reused after the container exited is
never entered or signalled.
"""

from __future__ import annotations

import os
import resource
from typing import Protocol

from lamina import errdefs
from lamina import sys as lsys
from lamina.records import replace
from lamina.runtime import capabilities as caps
from lamina.runtime.api import (
    ContainerSpec,
    ProcessSpec,
    Resources,
    RuntimeState,
    Stdio,
    cgroup_path,
)
from lamina.runtime.cgroups import (
    CgroupLayout,
    CgroupManager,
    detect_layout,
)
from lamina.runtime.child import ExecError, Plan, container_child
from lamina.runtime.seccomp import ProgramCache, SeccompProgram, default_profile_bytes
from lamina.runtime.forking import fork_child, fork_exec

# ExecError is what start and exec raise for a command that cannot be run
__all__ = ["ExecError", "NativeRuntime", "open_runtime"]

# the user namespace last: the others are joined with the host's capabilities (a sandbox's
# network namespace belongs to the host's user namespace)
_NAMESPACE_FILES = (("ipc", lsys.CLONE_NEWIPC), ("uts", lsys.CLONE_NEWUTS), ("net", lsys.CLONE_NEWNET),
                    ("cgroup", lsys.CLONE_NEWCGROUP), ("mnt", lsys.CLONE_NEWNS), ("user", lsys.CLONE_NEWUSER))


def _user_namespace(spec: ContainerSpec) -> int:
    """A descriptor of the user namespace with the spec's maps (:func:`lamina.idmap.userns_fd`)."""
    from lamina.idmap import IDMap, IdentityMapping, userns_fd

    mapping = IdentityMapping(tuple(IDMap(*item) for item in spec.uid_mappings),
                              tuple(IDMap(*item) for item in spec.gid_mappings))
    return userns_fd(mapping)


class ProcessMembers(Protocol):
    """The processes of a container as a group: which they are, and ending them."""

    path: str

    def exists(self) -> bool: ...

    def pids(self) -> list[int]: ...

    def create(self) -> None: ...

    def remove(self, timeout: float = 2.0) -> None: ...

    def open_procs_files(self) -> list[int]: ...

    def kill_all(self, signal: int = ...) -> None: ...

    def kill_remaining(self, timeout: float = 0.1) -> list[int]: ...


class ProcessControls(Protocol):
    """Limits, freezing and accounting of a container's processes."""

    def apply(self, resources: Resources) -> None: ...

    def allow_devices(self, rules: tuple[str, ...]) -> None: ...

    def freeze(self) -> None: ...

    def thaw(self) -> None: ...

    def stats(self) -> dict[str, object]: ...

    def oom_killed(self) -> bool: ...


class ProcessGroup(ProcessMembers, ProcessControls, Protocol):
    """What the runtime needs of a container's processes: its cgroup (:class:`CgroupManager`) or,
    without cgroups, its pid namespace's members (:class:`~lamina.runtime.nocgroup.PidNamespaceMembers`)."""


def _cgroup_mounts(manager: CgroupManager) -> tuple[tuple[str, str], ...]:
    """(name under the container's /sys/fs/cgroup, the container's cgroup directory) per hierarchy: the
    basename of its mount point (``cpu``, ``unified``...), ``""`` for a v2 tree at /sys/fs/cgroup itself."""
    out: list[tuple[str, str]] = []
    for _, point in manager.layout.mounts:
        name = "" if os.path.normpath(point) == "/sys/fs/cgroup" else os.path.basename(os.path.normpath(point))
        directory = os.path.join(point, manager.path)
        if (name, directory) not in out and os.path.isdir(directory):
            out.append((name, directory))
    return tuple(out)


class NativeRuntime:
    """lamina's own runtime (see the module docstring for the process model)."""

    name = "native"

    def __init__(self, *, cgroup_layout: CgroupLayout | None = None, seccomp_profile: bytes | None = None,
                 seccomp_cache: str | None = None, cgroups: bool = True, fork_helper: bool = False) -> None:
        """``seccomp_profile``: the JSON of the profile (Docker's default when ``None``);
        ``seccomp_cache``: a directory where compiled filters are kept between processes;
        ``cgroups`` False (rootless): containers get a cgroup only under the delegated
        ``cgroup_layout`` (:mod:`lamina.runtime.delegation`), else their pid namespace's members;
        ``fork_helper``: enter pid namespaces in a helper process (:meth:`_fork_through_helper`),
        for a caller in a user namespace that does not own its own pid namespace (rootless)."""
        self._layout = cgroup_layout
        self._use_cgroups = cgroups
        self._fork_helper = fork_helper
        self._profile = seccomp_profile
        self._programs = ProgramCache(seccomp_cache)

    # -- parent-side preparation ----------------------------------------------------------

    def _cgroups(self, path: str, pid: int | None = None) -> ProcessGroup:
        """The container's cgroup, or without cgroups its pid namespace's members (which
        offer the same methods; ``pid``: the container's PID 1)."""
        if not self._use_cgroups:
            from lamina.runtime.delegation import process_group

            return process_group(path, pid, self._layout)
        if self._layout is None:
            self._layout = detect_layout()
        return CgroupManager(path, self._layout)

    def _seccomp(self, capability_names: tuple[str, ...], profile: bytes | None = None) -> SeccompProgram:
        if profile is not None:
            return self._programs.get(profile, capability_names)
        if self._profile is None:
            self._profile = default_profile_bytes()
        return self._programs.get(self._profile, capability_names)

    @staticmethod
    def _capabilities(process: ProcessSpec) -> tuple[int, int, tuple[str, ...]]:
        last = caps.last_capability()
        wanted = caps.capability_mask(process.capabilities)
        # a capability the runtime itself lacks (e.g. CAP_SYS_RESOURCE in a restricted host)
        # cannot be given: keep those of the requested set that the bounding set still has
        bounding = wanted
        try:
            with open("/proc/self/status", encoding="ascii") as handle:
                for line in handle:
                    if line.startswith("CapBnd:"):
                        bounding = int(line.split()[1], 16)
        except OSError:
            pass
        mask = wanted & bounding & ((1 << (last + 1)) - 1)
        names = tuple(name for number, name in enumerate(caps.CAPABILITIES) if mask & (1 << number))
        return mask, last, names

    @staticmethod
    def _rlimits(process: ProcessSpec) -> tuple[tuple[int, int, int], ...]:
        result = []
        for name, soft, hard in process.rlimits:
            number = getattr(resource, name.upper(), None)
            if not name.upper().startswith("RLIMIT_") or not isinstance(number, int):
                raise errdefs.InvalidArgument(f"unknown rlimit {name!r}")
            if soft < 0:
                soft = resource.RLIM_INFINITY
            if hard < 0:
                hard = resource.RLIM_INFINITY
            result.append((number, soft, hard))
        return tuple(result)

    @staticmethod
    def _validate_process(process: ProcessSpec) -> None:
        if not process.args or not process.args[0]:
            raise errdefs.InvalidArgument("no command specified")
        if not process.cwd.startswith("/"):
            raise errdefs.InvalidArgument(
                f"the working directory '{process.cwd}' is invalid, it needs to be an absolute path")

    def _plan(self, spec: ContainerSpec, process: ProcessSpec) -> tuple[Plan, tuple[str, ...]]:
        self._validate_process(process)
        mask, last, names = self._capabilities(process)
        flags = 0
        namespaces = spec.namespaces
        if "mount" not in namespaces:
            raise errdefs.InvalidArgument("the native runtime needs a mount namespace (pivot_root)")
        flags |= lsys.CLONE_NEWNS
        joined = dict(spec.namespace_paths)
        if set(joined) - {"pid", "ipc", "uts"} or set(joined) - set(namespaces):
            raise errdefs.InvalidArgument(f"cannot join namespaces {sorted(joined)} of {sorted(namespaces)}")
        if "uts" in namespaces and "uts" not in joined:
            flags |= lsys.CLONE_NEWUTS
        if "ipc" in namespaces and "ipc" not in joined:
            flags |= lsys.CLONE_NEWIPC
        if spec.network not in ("private", "none", "host"):
            raise errdefs.InvalidArgument(f"unknown network mode {spec.network!r} for the native runtime")
        if spec.network_namespace and (spec.network != "private" or "network" not in namespaces):
            raise errdefs.InvalidArgument("a network namespace to join needs the private network mode")
        private_network = spec.network != "host" and "network" in namespaces and not spec.network_namespace
        if private_network:
            flags |= lsys.CLONE_NEWNET
        user_namespace = "user" in namespaces
        if user_namespace != bool(spec.uid_mappings and spec.gid_mappings):
            raise errdefs.InvalidArgument("a user namespace needs uid and gid mappings, and mappings a user namespace")
        if user_namespace and ("pid" not in namespaces or spec.network == "host"):
            raise errdefs.InvalidArgument("a container in a user namespace needs its own pid and network namespaces")
        if user_namespace and joined:
            raise errdefs.InvalidArgument("a container in a user namespace cannot join another container's "
                                          f"{', '.join(sorted(joined))} namespace")
        return Plan(spec=spec, process=process, unshare_flags=flags, private_network=private_network,
                     capability_mask=mask, last_capability=last, rlimits=self._rlimits(process),
                     user_namespace=user_namespace), names

    # -- Runtime protocol -----------------------------------------------------------------

    def prepare(self) -> None:
        """The cgroup layout, the default seccomp profile, and libseccomp (its version is part
        of a compiled program's key)."""
        if self._use_cgroups and self._layout is None:
            self._layout = detect_layout()
        if self._profile is None:
            self._profile = default_profile_bytes()
        self._programs.prepare()

    def start(self, spec: ContainerSpec, stdio: Stdio) -> RuntimeState:
        if not os.path.isdir(spec.rootfs):
            raise errdefs.NotFound(f"root filesystem {spec.rootfs} does not exist")
        plan, capability_names = self._plan(spec, spec.process)
        manager = self._cgroups(f"{spec.cgroup_parent.strip('/')}/{spec.id}")
        if manager.exists() and manager.pids():
            raise errdefs.Conflict(f"container {spec.id} is already running (its cgroup has processes)")
        joined = _open_namespaces(spec.namespace_paths)
        pid_namespace = joined.pop("pid", None)
        namespace_fds = list(joined.values())
        try:
            manager.create()
            if isinstance(manager, CgroupManager) and not manager.layout.delegated:  # rootless: no view
                plan = replace(plan, cgroup_mounts=_cgroup_mounts(manager))
            started = False
            try:
                manager.apply(spec.resources)
                manager.allow_devices(spec.device_rules)
                seccomp = self._seccomp(capability_names, spec.seccomp_profile) if spec.seccomp else None
                procs_fds = manager.open_procs_files()
                user_namespace: tuple[int, str, tuple[tuple[str, str], ...]] | None = None
                if plan.user_namespace:
                    # the intermediate joins the network namespace and writes its net.* sysctls
                    # before it leaves the host's user namespace (lamina.runtime.userns)
                    network_sysctls = tuple(item for item in spec.sysctls if item[0].startswith("net.")) \
                        if spec.network_namespace else ()
                    user_namespace = (_user_namespace(spec), spec.network_namespace, network_sysctls)
                    plan = replace(plan, spec=replace(spec, network_namespace="", sysctls=tuple(
                        item for item in spec.sysctls if item not in network_sysctls)))
                pid = fork_child(
                    through_helper=self._fork_helper, new_pid_namespace="pid" in spec.namespaces and pid_namespace is None, seccomp=seccomp,
                    procs_fds=procs_fds, join_pid_namespace=None if pid_namespace is None else pid_namespace[0],
                    user_namespace=user_namespace,
                    child=lambda status_fd, procs, filter_, trampoline: container_child(
                        plan, stdio, status_fd, procs, filter_, trampoline, namespace_fds))
                started = True
            finally:
                if not started:
                    self._remove_quietly(manager)
        finally:
            for fd, _ in [*namespace_fds, *([pid_namespace] if pid_namespace else [])]:
                os.close(fd)
        return RuntimeState(id=spec.id, pid=pid, runtime=self.name, cgroup=manager.path)

    def exec(self, state: RuntimeState, process: ProcessSpec, stdio: Stdio) -> int:
        spec = ContainerSpec(id=state.id, rootfs="/", process=process)
        plan, capability_names = self._plan(spec, process)
        namespace_fds: list[tuple[int, int]] = []
        pid_namespace = None
        manager = self._cgroups(cgroup_path(state), state.pid)
        try:
            for name, kind in _NAMESPACE_FILES:
                path = f"/proc/{state.pid}/ns/{name}"
                try:
                    if os.stat(path).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
                        continue  # shared with the host (e.g. network=host): nothing to join
                    namespace_fds.append((os.open(path, os.O_RDONLY | os.O_CLOEXEC), kind))
                except FileNotFoundError as exc:
                    if name == "cgroup":
                        continue
                    raise errdefs.Conflict(f"container {state.id} is not running") from exc
            try:
                pid_namespace = os.open(f"/proc/{state.pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError as exc:
                raise errdefs.Conflict(f"container {state.id} is not running") from exc
            # checked after opening: the descriptors name the container's namespaces, not
            # those of a process that reused the pid
            self._check_running(state, manager)
            seccomp = self._seccomp(capability_names, process.seccomp_profile) if self._exec_seccomp(state) else None
            procs_fds = manager.open_procs_files() if manager.exists() else []
            return fork_exec(plan, stdio, list(namespace_fds), pid_namespace, procs_fds, seccomp)
        finally:
            for fd, _ in namespace_fds:
                os.close(fd)
            if pid_namespace is not None:
                os.close(pid_namespace)

    @staticmethod
    def _exec_seccomp(state: RuntimeState) -> bool:
        # an exec gets the container's filter when the container has one
        try:
            with open(f"/proc/{state.pid}/status", encoding="ascii") as handle:
                for line in handle:
                    if line.startswith("Seccomp:"):
                        return line.split()[1] != "0"
        except OSError:
            pass
        return True

    @staticmethod
    def _remove_quietly(manager: ProcessGroup) -> None:
        try:
            manager.kill_all()
            manager.remove()
        except errdefs.LaminaError:
            pass

    @staticmethod
    def _check_running(state: RuntimeState, manager: ProcessGroup) -> None:
        """The container's PID 1 is still ``state.pid``: it is a member of the container's
        cgroup (a pid reused by another process after the container exited is not)."""
        try:
            members = manager.pids()
        except errdefs.LaminaError:
            members = []
        if state.pid not in members:
            raise errdefs.Conflict(f"container {state.id} is not running")

    def kill(self, state: RuntimeState, signal: int, *, all: bool = False) -> None:
        manager = self._cgroups(cgroup_path(state), state.pid)
        if all:
            manager.kill_all(signal)
            return
        self._check_running(state, manager)
        try:
            os.kill(state.pid, signal)
        except ProcessLookupError as exc:
            raise errdefs.Conflict(f"container {state.id} is not running") from exc

    def pause(self, state: RuntimeState) -> None:
        self._cgroups(cgroup_path(state), state.pid).freeze()

    def resume(self, state: RuntimeState) -> None:
        self._cgroups(cgroup_path(state), state.pid).thaw()

    def update(self, state: RuntimeState, resources: Resources) -> None:
        self._cgroups(cgroup_path(state), state.pid).apply(resources)

    def stats(self, state: RuntimeState) -> dict[str, object]:
        return self._cgroups(cgroup_path(state), state.pid).stats()

    def cgroup_path(self, state: RuntimeState) -> str:
        return cgroup_path(state)

    def oom_killed(self, state: RuntimeState) -> bool:
        """Whether the kernel's OOM killer killed a process of the container."""
        return self._cgroups(cgroup_path(state), state.pid).oom_killed()

    def processes(self, state: RuntimeState) -> list[int]:
        return self._cgroups(cgroup_path(state), state.pid).pids()

    def delete(self, state: RuntimeState, *, force: bool = False) -> None:
        manager = self._cgroups(cgroup_path(state), state.pid)
        remaining = manager.kill_remaining() if force else manager.pids() if manager.exists() else []
        if remaining:
            raise errdefs.Conflict(f"container {state.id} still has processes {remaining}; kill them first")
        manager.remove()


def _open_namespaces(paths: tuple[tuple[str, str], ...]) -> dict[str, tuple[int, int]]:
    """Open the namespaces a new container joins (``ContainerSpec.namespace_paths``): name ->
    (descriptor, CLONE_* kind).  A namespace whose process is gone is a Conflict."""
    kinds = {"pid": lsys.CLONE_NEWPID, "ipc": lsys.CLONE_NEWIPC, "uts": lsys.CLONE_NEWUTS}
    opened: dict[str, tuple[int, int]] = {}
    try:
        for name, path in paths:
            try:
                opened[name] = (os.open(path, os.O_RDONLY | os.O_CLOEXEC), kinds[name])
            except FileNotFoundError as exc:
                raise errdefs.Conflict(f"cannot join the {name} namespace {path}: its process is gone") from exc
            except OSError as exc:
                raise errdefs.System(f"cannot open the {name} namespace {path}: {exc.strerror}") from exc
    except BaseException:
        for fd, _ in opened.values():
            os.close(fd)
        raise
    return opened


def open_runtime(name: str, exec_root: str) -> NativeRuntime:
    """The registry's factory (:mod:`lamina.runtime.registry`): compiled seccomp filters are
    kept in ``<exec_root>/seccomp`` (compiling Docker's profile costs ~20 ms).  In a user
    namespace (rootless lamina) containers get cgroups only under a delegated cgroup."""
    from lamina.config import in_user_namespace
    from lamina.runtime.delegation import current

    rootless = in_user_namespace()
    delegation = current() if rootless else None
    return NativeRuntime(seccomp_cache=os.path.join(exec_root, "seccomp"), cgroups=not rootless,
                         fork_helper=rootless, cgroup_layout=delegation.layout() if delegation else None)
