"""OCI runtime driver: runs containers through ``crun`` or ``runc`` from an OCI runtime bundle.

:class:`OCIRuntime` implements :class:`lamina.runtime.api.Runtime` by translating a
:class:`ContainerSpec` into an OCI runtime-spec ``config.json`` (:func:`config_json`, equivalent
to what Docker 23+ generates for ``docker run``) and driving the binary's command line.

Bundle directory ``<state_root>/<id>/`` (mode 0700)::

    config.json            OCI runtime config, ociVersion 1.0.2
    pid                    host pid of the container's PID 1 (written by ``<binary> create``)
    runtime.log            the binary's own log (``--log``, ``--log-format json``: one
                           ``{"level":...,"msg":...,"time":...}`` per line); its errors become
                           the messages of the errdefs errors raised here
    exec-<n>.json/.pid     process.json and pid of one ``exec`` (removed once it started)
    resources-<n>.json     linux.resources handed to ``<binary> update`` (removed after)

The binary keeps its own state in ``<state_root>/<binary-name>/`` (its ``--root``).

Commit point of :meth:`OCIRuntime.start`: ``<binary> create`` exiting 0.  A failure before it
removes the bundle; a failure of ``<binary> start`` after it runs ``delete --force`` and removes
the bundle, so a failed start leaves no process, cgroup or bundle behind.  :meth:`delete` undoes a
container: ``delete --force`` (kills what is left, removes the cgroups), leftover empty cgroup
directories, then the bundle.

Process model: the caller becomes a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``) before
``create``/``exec``.  The binary exits once the process is set up, so the container's PID 1 and
exec'd processes are reparented to the caller, which reaps them with ``waitpid``.  Being a
subreaper, the caller may also inherit short-lived helper processes of the binary; a monitor
reaps with ``waitpid(-1)``.  stdio: the given descriptors are the binary's 0/1/2 and pass through
to the container's process (the binary's own error text also lands on that stderr, as with
containerd's shim; we read it from ``runtime.log``).

cgroups: ``linux.cgroupsPath`` is ``/<cgroup_parent>/<id>`` (cgroupfs style).  It is absolute on
purpose: runc resolves a relative path against its *own* cgroup, which would nest containers under
whatever cgroup the caller sits in; absolute, it is ``lamina/<id>`` under each hierarchy root,
the same place the native runtime uses.

Host quirk (cgroup v1 "hybrid" hosts): crun refuses controllers attached to the cgroup2
hierarchy; on first start, as root, the runtime gives each its own v1 hierarchy
(:func:`lamina.runtime.oci_cgroups.ensure_v1_hierarchies`).

User namespaces (``--userns-remap``): the spec's ``user`` namespace and id mappings, and a bundle
prepared for the namespace's root (:mod:`lamina.runtime.oci_userns`: the root filesystem bound at
``<bundle>/rootfs``, detached before the bundle is removed).

Not supported through OCI runtimes yet (``errdefs.NotImplemented``): ``terminal`` (needs a console
socket receiving the pty master), ``init`` (no init binary to bind-mount yet).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import errno
import os
import re
import shutil
import signal as signals
import subprocess
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lamina import errdefs
from lamina.fsutil import atomic_write_json, remove_tree
from lamina.log import get_logger
from lamina.runtime.api import ContainerSpec, ProcessSpec, Resources, RuntimeState, Stdio, cgroup_path
from lamina.runtime.oci_cgroups import CgroupHierarchies, cgroup_stats, ensure_v1_hierarchies, swap_limit_supported
from lamina.runtime.oci_config import ID_PATTERN, config_json, load_default_seccomp_profile, process_json, resources_json

if TYPE_CHECKING:
    from lamina.runtime.cgroups import CgroupManager

__all__ = ["OCIRuntime", "open_runtime"]

log = get_logger(__name__)

_PR_SET_CHILD_SUBREAPER = 36


_FREEZER_TIMEOUT = 10.0


def _wait_freezer(manager: CgroupManager, *, frozen: bool) -> None:
    """Wait until the kernel reports the cgroup of ``manager`` frozen (or thawed)."""
    deadline = time.monotonic() + _FREEZER_TIMEOUT
    delay = 0.001
    while manager.frozen() != frozen:
        if time.monotonic() >= deadline:
            raise errdefs.System(f"the cgroup {manager.path} is still {'not ' if frozen else ''}frozen after "
                                 f"{_FREEZER_TIMEOUT:.0f} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _set_child_subreaper() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(1), ctypes.c_ulong(0), ctypes.c_ulong(0),
                  ctypes.c_ulong(0)) != 0:
        err = ctypes.get_errno()
        raise errdefs.System(f"prctl(PR_SET_CHILD_SUBREAPER) failed: {os.strerror(err)}")


def _classify(action: str, message: str) -> type[errdefs.LaminaError]:
    lower = message.lower()
    # runc: "container does not exist"; crun: "error opening file `<root>/<id>/status`: No such file"
    if "container does not exist" in lower or ("/status`" in lower and "no such file" in lower):
        return errdefs.NotFound
    # runc opening the --log file in a bundle that the container's removal deleted meanwhile
    if "runtime.log: no such file" in lower:
        return errdefs.NotFound
    if action in ("create", "exec") and any(
            text in lower for text in ("executable file", "no such file or directory", "permission denied",
                                       "not a directory", "is a directory")):
        # Docker answers these with an invalid-parameter error (exit 127/126 at the CLI)
        return errdefs.InvalidArgument
    # crun kill of a process that exited meanwhile: "open pidfd: No such process"
    if any(text in lower for text in ("not running", "not paused", "is paused", "stopped container",
                                      "container is not", "cannot exec in a", "no such process")):
        return errdefs.Conflict
    if "already exists" in lower or "file exists" in lower:
        return errdefs.AlreadyExists
    return errdefs.System


def _reap(pid: int, timeout: float = 5.0) -> None:
    """Wait for ``pid`` if it is our child (it is, as subreaper, once the binary exited)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        if time.monotonic() > deadline:
            log.warning("process %d did not exit after %.0f s", pid, timeout)
            return
        time.sleep(0.005)


class OCIRuntime:
    """The :class:`~lamina.runtime.api.Runtime` that hands OCI bundles to ``crun`` or ``runc``."""

    def __init__(self, binary: str, state_root: str = "/run/lamina/oci", *, timeout: float = 60.0) -> None:
        resolved = shutil.which(binary)
        if resolved is None:
            raise errdefs.FailedPrecondition(f"OCI runtime {binary!r} not found (looked in PATH)")
        self.binary = resolved
        self.name = os.path.basename(resolved)
        self.state_root = os.path.abspath(state_root)
        self.root = os.path.join(self.state_root, self.name)
        self.timeout = timeout
        self._host_checked = False
        self._version: tuple[int, int] | None = None
        self._default_profile: dict[str, Any] | None = None

    # -- plumbing -------------------------------------------------------------------------------

    def _bundle(self, container_id: str) -> str:
        if not ID_PATTERN.match(container_id):
            raise errdefs.InvalidArgument(f"invalid container id {container_id!r}")
        return os.path.join(self.state_root, container_id)

    def _environment(self) -> dict[str, str]:
        # a systemd notify socket in our environment would make runc talk to systemd
        return {key: value for key, value in os.environ.items()
                if key not in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID")}

    def _invoke(self, action: str, arguments: Sequence[str], *, container_id: str, stdio: Stdio | None = None,
                network_namespace: str | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run ``<binary> --root ... <action> <arguments>``, in ``network_namespace`` when given
        (``nsenter --net``); failures become errdefs errors."""
        bundle = os.path.join(self.state_root, container_id)
        log_path = os.path.join(bundle, "runtime.log") if os.path.isdir(bundle) else None
        offset = os.path.getsize(log_path) if log_path and os.path.exists(log_path) else 0
        command = [self.binary, "--root", self.root]
        if log_path:
            command += ["--log", log_path, "--log-format", "json"]
        command += [action, *arguments]
        if network_namespace:
            command = ["nsenter", f"--net={network_namespace}", "--", *command]
        if stdio is not None:
            streams: dict[str, Any] = {"stdin": stdio.stdin, "stdout": stdio.stdout, "stderr": stdio.stderr}
        else:
            streams = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        try:
            completed = subprocess.run(command, **streams, env=self._environment(), timeout=self.timeout,
                                       check=False)
        except subprocess.TimeoutExpired as exc:
            raise errdefs.Unavailable(f"{self.name} {action} {container_id} did not finish within "
                                      f"{self.timeout:.0f} s") from exc
        except OSError as exc:
            raise errdefs.System(f"cannot run {command[0]}: {exc.strerror}") from exc
        if completed.returncode != 0:
            message = self._error_text(log_path, offset, completed.stderr)
            kind = _classify(action, message)
            raise kind(f"{self.name} {action} {container_id}: {message or f'exit status {completed.returncode}'}")
        return completed

    @staticmethod
    def _error_text(log_path: str | None, offset: int, stderr: bytes | None) -> str:
        messages = []
        if log_path:
            try:
                with open(log_path, "rb") as handle:
                    handle.seek(offset)
                    new = handle.read()
            except OSError:
                new = b""
            for line in new.splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and entry.get("level") in ("error", "fatal", "panic"):
                    messages.append(str(entry.get("msg", "")))
        if not messages and stderr:
            text = stderr.decode(errors="replace").strip()
            messages = [re.sub(r'^time="[^"]*" level=\w+ msg=', "", line).strip('"')
                        for line in text.splitlines() if line.strip()]
        # runc repeats the final error; keep each message once, in order
        return "; ".join(dict.fromkeys(message for message in messages if message))

    def _prepare_host(self) -> CgroupHierarchies:
        hierarchies = CgroupHierarchies.detect()
        if not self._host_checked:
            if ensure_v1_hierarchies(hierarchies):
                hierarchies = CgroupHierarchies.detect()
            self._host_checked = True
        return hierarchies

    def _known(self, container_id: str) -> bool:
        try:
            self._invoke("state", [container_id], container_id=container_id)
        except errdefs.NotFound:
            return False
        return True

    def _read_pid(self, path: str, what: str) -> int:
        try:
            with open(path, encoding="ascii") as handle:
                return int(handle.read().strip())
        except (OSError, ValueError) as exc:
            raise errdefs.System(f"{self.name} did not leave a pid for {what} in {path}: {exc}") from exc

    def _reap_helpers(self) -> None:
        """Reap the binary's helper processes that were reparented to us (the subreaper).

        After a failed ``exec`` crun's forked child, which lives in the container's pid namespace,
        stays our zombie; an unreaped zombie keeps that namespace's PID 1 from finishing its exit.
        Only children named after the binary are touched: the caller's own children are left
        to it.
        """
        me = os.getpid()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as handle:
                    text = handle.read()
            except OSError:
                continue
            command = text[text.find("(") + 1:text.rfind(")")]
            fields = text[text.rfind(")") + 2:].split()
            if len(fields) > 1 and fields[1] == str(me) and command.startswith(self.name):
                _reap(int(entry), timeout=2.0)

    @staticmethod
    def _remove_bundle(bundle: str) -> None:
        from lamina.runtime.oci_userns import release_mounts

        release_mounts(bundle)  # never through a bound root filesystem
        remove_tree(bundle)

    def _prepare_user_namespace(self, spec: ContainerSpec, bundle: str, config: dict[str, Any]) -> None:
        """A container in a user namespace: its root filesystem bound where the namespace's
        root reaches it, the ``net.*`` sysctls of a joined network namespace written from
        here; with a runc that would not join that namespace in an exec, it is entered
        around the binary instead (:mod:`lamina.runtime.oci_userns`)."""
        from lamina.runtime import oci_userns

        uid, gid = oci_userns.host_root(spec.uid_mappings), oci_userns.host_root(spec.gid_mappings)
        oci_userns.keep_locked_flags(config)
        config["root"]["path"] = oci_userns.prepare_rootfs(bundle, spec.rootfs, uid, gid)
        if spec.network_namespace:
            oci_userns.prepare_network(bundle, spec.network_namespace, config, spec.gid_mappings)
            if self._joins_user_namespace_first():
                oci_userns.enter_network_namespace_around(config, spec.network_namespace)

    def _joins_user_namespace_first(self) -> bool:
        """Whether this is a runc before 1.3, which joins the user namespace of an exec before
        its other namespaces (and then cannot join a network namespace of the host's)."""
        if self.name != "runc":
            return False
        if self._version is None:
            completed = subprocess.run([self.binary, "--version"], capture_output=True, text=True, check=False)
            match = re.search(r"version (\d+)\.(\d+)", completed.stdout)
            self._version = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
        return self._version < (1, 3)

    def _force_delete_quietly(self, container_id: str) -> None:
        try:
            self._invoke("delete", ["--force", container_id], container_id=container_id)
        except errdefs.LaminaError as exc:
            log.warning("cleaning up container %s: %s", container_id, exc)

    # -- Runtime --------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Docker's default seccomp profile (:meth:`_default_seccomp`)."""
        self._default_seccomp()

    def _default_seccomp(self) -> dict[str, Any]:
        """Docker's default seccomp profile, read and parsed once per runtime (not at every start)."""
        if self._default_profile is None:
            self._default_profile = load_default_seccomp_profile()
        return self._default_profile

    def start(self, spec: ContainerSpec, stdio: Stdio) -> RuntimeState:
        bundle = self._bundle(spec.id)
        if spec.process.terminal:
            raise errdefs.NotImplemented(
                f"a terminal (-t) is not supported with the {self.name} runtime yet; use the native runtime")
        if spec.init:
            raise errdefs.NotImplemented(f"--init is not supported with the {self.name} runtime yet")
        hierarchies = self._prepare_host()
        config = config_json(spec, seccomp_profile=self._default_seccomp()
                             if spec.seccomp and spec.seccomp_profile is None else None)
        memory = config["linux"]["resources"].get("memory", {})
        if "swap" in memory and not swap_limit_supported(hierarchies):
            log.warning("container %s: the kernel does not support swap limit capabilities or the cgroup "
                        "is not mounted; memory limited without swap", spec.id)
            del memory["swap"]

        try:
            os.makedirs(self.state_root, mode=0o711, exist_ok=True)
            try:
                os.mkdir(bundle, 0o700)
            except FileExistsError:
                if self._known(spec.id):
                    raise errdefs.AlreadyExists(f"container {spec.id} already exists in {self.name}") from None
                log.warning("removing the stale bundle %s", bundle)
                self._remove_bundle(bundle)
                os.mkdir(bundle, 0o700)
        except OSError as exc:
            raise errdefs.System(f"cannot create the bundle {bundle}: {exc.strerror}") from exc

        pid_file = os.path.join(bundle, "pid")
        try:
            if "user" in spec.namespaces:
                self._prepare_user_namespace(spec, bundle, config)
            atomic_write_json(os.path.join(bundle, "config.json"), config, mode=0o600)
            _set_child_subreaper()
            self._invoke("create", ["--bundle", bundle, "--pid-file", pid_file, spec.id], container_id=spec.id,
                         stdio=stdio, network_namespace=_entered_network_namespace(config))
        except BaseException:
            self._force_delete_quietly(spec.id)
            self._reap_helpers()
            self._remove_bundle(bundle)
            raise
        # committed: the container exists in the runtime
        pid = 0
        try:
            pid = self._read_pid(pid_file, f"container {spec.id}")
            self._invoke("start", [spec.id], container_id=spec.id)
        except BaseException:
            self._force_delete_quietly(spec.id)
            if pid:
                _reap(pid)
            self._remove_bundle(bundle)
            raise
        return RuntimeState(id=spec.id, pid=pid, runtime=self.name,
                            cgroup=f"{spec.cgroup_parent.strip('/')}/{spec.id}", bundle=bundle)

    def exec(self, state: RuntimeState, process: ProcessSpec, stdio: Stdio) -> int:
        bundle = state.bundle or self._bundle(state.id)
        if process.terminal:
            raise errdefs.NotImplemented(
                f"a terminal (-t) is not supported with the {self.name} runtime yet; use the native runtime")
        name = f"exec-{uuid.uuid4().hex[:12]}"
        process_path = os.path.join(bundle, name + ".json")
        pid_path = os.path.join(bundle, name + ".pid")
        body = process_json(process)
        try:
            atomic_write_json(process_path, body, mode=0o600)
        except FileNotFoundError as exc:
            raise errdefs.NotFound(f"container {state.id} has no bundle in {self.state_root}") from exc
        except OSError as exc:
            raise errdefs.System(f"cannot write {process_path}: {exc.strerror}") from exc
        try:
            _set_child_subreaper()
            self._invoke("exec", ["--process", process_path, "--pid-file", pid_path, "--detach", state.id],
                         container_id=state.id, stdio=stdio,
                         network_namespace=_bundle_network_namespace(bundle) if self.name == "runc" else None)
            return self._read_pid(pid_path, f"an exec in {state.id}")
        except BaseException:
            self._reap_helpers()
            raise
        finally:
            for path in (process_path, pid_path):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass

    def kill(self, state: RuntimeState, signal: int, *, all: bool = False) -> None:
        number = int(signal)
        if not 1 <= number <= signals.SIGRTMAX:
            raise errdefs.InvalidArgument(f"invalid signal {signal}")
        arguments = (["--all"] if all else []) + [state.id, str(number)]
        self._invoke("kill", arguments, container_id=state.id)

    def pause(self, state: RuntimeState) -> None:
        """Returns once the kernel reports every process frozen: runc waits for that, crun
        only writes the freezer state (on cgroup v1 it reads ``FREEZING`` until the last
        task stops, and ``<binary> state`` answers ``running`` meanwhile)."""
        self._invoke("pause", [state.id], container_id=state.id)
        try:
            _wait_freezer(self._cgroup(state), frozen=True)
        except errdefs.LaminaError:
            self._invoke("resume", [state.id], container_id=state.id)
            raise

    def resume(self, state: RuntimeState) -> None:
        self._invoke("resume", [state.id], container_id=state.id)
        _wait_freezer(self._cgroup(state), frozen=False)

    def update(self, state: RuntimeState, resources: Resources) -> None:
        body = resources_json(resources)
        if not body:
            return
        hierarchies = CgroupHierarchies.detect()
        if "swap" in body.get("memory", {}) and not swap_limit_supported(hierarchies):
            log.warning("container %s: swap limit not supported by the kernel; ignored", state.id)
            del body["memory"]["swap"]
        bundle = state.bundle or self._bundle(state.id)
        path = os.path.join(bundle, f"resources-{uuid.uuid4().hex[:12]}.json")
        try:
            atomic_write_json(path, body, mode=0o600)
        except FileNotFoundError as exc:
            raise errdefs.NotFound(f"container {state.id} has no bundle in {self.state_root}") from exc
        try:
            self._invoke("update", ["--resources", path, state.id], container_id=state.id)
        finally:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def stats(self, state: RuntimeState) -> dict[str, object]:
        return cgroup_stats(CgroupHierarchies.detect(), cgroup_path(state))

    def status(self, state: RuntimeState) -> str:
        """The binary's view of the container: ``created``, ``running``, ``paused`` or ``stopped``."""
        completed = self._invoke("state", [state.id], container_id=state.id)
        try:
            return str(json.loads(completed.stdout)["status"])
        except (ValueError, KeyError, TypeError) as exc:
            raise errdefs.System(f"{self.name} state {state.id}: unexpected output") from exc

    def cgroup_path(self, state: RuntimeState) -> str:
        return cgroup_path(state)

    def _cgroup(self, state: RuntimeState) -> CgroupManager:
        from lamina.runtime.cgroups import CgroupManager

        return CgroupManager(cgroup_path(state))

    def oom_killed(self, state: RuntimeState) -> bool:
        return self._cgroup(state).oom_killed()

    def processes(self, state: RuntimeState) -> list[int]:
        return self._cgroup(state).pids()

    def delete(self, state: RuntimeState, *, force: bool = False) -> None:
        """``<binary> delete --force`` (it removes a stopped container's state and cgroups),
        then leftover empty cgroup directories and the bundle."""
        bundle = state.bundle or self._bundle(state.id)
        manager = self._cgroup(state)
        # runc and crun deliver the kill of --force only to what they still know of; a
        # forced delete empties the cgroup itself first
        remaining = manager.kill_remaining() if force else manager.pids() if manager.exists() else []
        if remaining:
            raise errdefs.Conflict(f"container {state.id} still has processes {remaining}; kill them first")
        try:
            self._invoke("delete", ["--force", state.id], container_id=state.id)
        except errdefs.NotFound:
            pass
        if state.cgroup:
            for directory in reversed(CgroupHierarchies.detect().directories(state.cgroup)):
                try:
                    os.rmdir(directory)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    if exc.errno == errno.EBUSY:
                        raise errdefs.Conflict(f"cgroup {directory} still has processes") from exc
                    raise errdefs.System(f"cannot remove the cgroup {directory}: {exc.strerror}") from exc
        self._remove_bundle(bundle)


def _entered_network_namespace(config: dict[str, Any]) -> str | None:
    from lamina.runtime.oci_userns import entered_network_namespace

    return entered_network_namespace(config)


def _bundle_network_namespace(bundle: str) -> str | None:
    """The network namespace an exec of this bundle's container is started in (see
    :func:`lamina.runtime.oci_userns.enter_network_namespace_around`), None for most."""
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        return None  # the binary reports what is wrong with the bundle
    return _entered_network_namespace(config)


def open_runtime(name: str, exec_root: str) -> OCIRuntime:
    """The registry's factory (:mod:`lamina.runtime.registry`): the binary called ``name``,
    bundles under ``<exec_root>/oci``."""
    return OCIRuntime(name, state_root=os.path.join(exec_root, "oci"))
