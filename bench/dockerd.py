"""A private Docker daemon for the benchmarks: the real peer lamina is measured against.

``PrivateDockerd`` starts ``dockerd`` (with the ``containerd`` it spawns under its exec root) in
a fresh directory ``D`` (``/tmp/lamina-bench-dockerd-*``)::

    D/root         --data-root (overlay2; dockerd bind-mounts it on itself)
    D/exec         --exec-root (containerd's state and socket, the shims' bundles, netns)
    D/docker.sock  -H unix://D/docker.sock: the socket the docker CLI is pointed at (DOCKER_HOST)
    D/docker.pid   --pidfile
    D/config       DOCKER_CONFIG of the CLI (nothing written to ~/.docker)
    D/dockerd.log  the daemon's output (its tail is in the error when it does not start)

It never touches the host's networking (``--bridge=none --iptables=false --ip6tables=false
--ip-masq=false``: no docker0, no rules; containers run with ``--network none``) nor the
system's daemon (its socket and data root are never used).  Its containers' cgroups go under
a parent of their own (``--cgroup-parent /lamina-bench-dockerd-<pid>``), so a second daemon on
the machine is never confused with this one.

Use it as a context manager.  Entering starts the daemon and waits (``timeout`` seconds) for
``docker version`` to answer; when ``dockerd`` is not installed or does not start, ``ready`` is
False and ``reason`` says why (the benchmarks print it in the rows instead of failing).
Leaving (also on an exception, SIGINT or SIGTERM) stops it and cleans up completely:
SIGTERM to the pid of the pidfile and a wait; SIGKILL to whatever is left whose command line
names ``D`` (dockerd, containerd, containerd-shim) and to the processes of its cgroups;
unmount of everything under ``D`` (deepest first); removal of its cgroup directories in every
hierarchy, of the ``docker`` ones it created (only when empty and absent before), of
``/run/docker/plugins`` and ``/run/containerd/s`` when it created them and they are empty; and
removal of ``D``.  ``leftovers`` then lists anything still there (processes, mounts, cgroups,
new ``docker*`` / ``br-*`` network interfaces), which the benchmarks print.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from types import FrameType, TracebackType

DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"
DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
CGROUP = "/sys/fs/cgroup"
RUNTIME_DIRECTORIES = ("/run/docker/plugins", "/run/docker", "/run/containerd/s", "/run/containerd")


def _links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def _hierarchies() -> list[str]:
    """The mounted cgroup hierarchies (v1 controllers, the named ``systemd`` one, v2's)."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            kind = fields[fields.index("-") + 1]
            if kind in ("cgroup", "cgroup2") and fields[4] not in found:
                found.append(fields[4])
    return found


def _mounts_under(directory: str) -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        targets = [line.split()[4] for line in handle]
    prefix = directory.rstrip("/") + "/"
    return [target for target in targets if target == directory or target.startswith(prefix)]


def _processes_naming(directory: str) -> list[int]:
    """Pids whose command line names a path below ``directory`` (this process excluded)."""
    found = []
    needle = directory.rstrip("/").encode() + b"/"
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as handle:
                if needle in handle.read():
                    found.append(int(name))
        except OSError:
            continue
    return found


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while True:
        pids = [pid for pid in pids if os.path.exists(f"/proc/{pid}") and not _zombie(pid)]
        if not pids or time.monotonic() > deadline:
            return pids
        time.sleep(0.05)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


class PrivateDockerd:
    """``dockerd`` on a private data root, exec root and socket; see the module docstring."""

    def __init__(self, timeout: float = 60, base_environment: dict[str, str] | None = None,
                 skipped: str = "") -> None:
        """``skipped``: why not to start one at all (the rows then say it)."""
        self.timeout = timeout
        self.skipped = skipped
        self.base_environment = dict(os.environ if base_environment is None else base_environment)
        self.ready = False
        self.reason = ""
        self.directory = ""
        self.leftovers: list[str] = []
        self.process: subprocess.Popen[bytes] | None = None
        self._cgroup_parent = f"lamina-bench-dockerd-{os.getpid()}"
        self._existed: set[str] = set()
        self._links: set[str] = set()
        self._previous_handlers: dict[int, object] = {}
        self.version = ""
        self._stopped = False

    # -- what the benchmarks use ---------------------------------------------------------------

    @property
    def environment(self) -> dict[str, str]:
        """The environment of a docker CLI talking to this daemon."""
        return {**self.base_environment, "DOCKER_HOST": f"unix://{self.directory}/docker.sock",
                "DOCKER_CONFIG": os.path.join(self.directory, "config")}

    def docker(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """Run the docker CLI against this daemon; with ``check``, a failure raises with its stderr."""
        result = subprocess.run([DOCKER, *arguments], env=self.environment, stdin=subprocess.DEVNULL,
                                capture_output=True, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"docker {' '.join(arguments)}: exit {result.returncode}: "
                               f"{result.stderr.decode(errors='replace').strip()}")
        return result

    def load(self, archive: str) -> None:
        """``docker load -q -i archive``."""
        self.docker("load", "-q", "-i", archive)

    def containerd_shims(self) -> list[int]:
        """Pids of this daemon's ``containerd-shim*`` processes."""
        return self._commands_named("containerd-shim")

    def containerd(self) -> list[int]:
        """Pid of the ``containerd`` this daemon started (a list: empty when it is gone)."""
        return [pid for pid in self._commands_named("containerd") if pid not in self.containerd_shims()]

    def _commands_named(self, prefix: str) -> list[int]:
        pids = []
        for pid in _processes_naming(self.directory):
            try:
                with open(f"/proc/{pid}/comm", encoding="utf-8") as handle:
                    if handle.read().startswith(prefix):
                        pids.append(pid)
            except OSError:
                continue
        return pids

    # -- life cycle ----------------------------------------------------------------------------

    def __enter__(self) -> PrivateDockerd:
        for number in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[number] = signal.signal(number, self._interrupted)
        if self.skipped:
            self.reason = f"not measured: {self.skipped}"
            return self
        if not os.access(DOCKERD, os.X_OK):
            self.reason = "not measured: dockerd is not installed on this machine"
            return self
        if not os.access(DOCKER, os.X_OK):
            self.reason = "not measured: the docker CLI is not installed on this machine"
            return self
        try:
            self.start()
        except (OSError, RuntimeError) as error:
            self.reason = f"not measured: {error}"
            self.stop()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the clean-up is not interruptible
        try:
            self.stop()
        finally:
            signal.signal(signal.SIGINT, previous)
            for number, handler in self._previous_handlers.items():
                signal.signal(number, handler)  # type: ignore[arg-type]

    @staticmethod
    def _interrupted(number: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {number}")

    def start(self) -> None:
        self._existed = {path for path in [*RUNTIME_DIRECTORIES, *self._cgroup_paths("docker")]
                         if os.path.exists(path)}
        self._links = _links()
        self.directory = tempfile.mkdtemp(prefix="lamina-bench-dockerd-", dir="/tmp")
        os.makedirs(os.path.join(self.directory, "config"))
        log = open(os.path.join(self.directory, "dockerd.log"), "wb")  # noqa: SIM115 - closed below
        try:
            self.process = subprocess.Popen(
                [DOCKERD, "--data-root", f"{self.directory}/root", "--exec-root", f"{self.directory}/exec",
                 "-H", f"unix://{self.directory}/docker.sock", "--pidfile", f"{self.directory}/docker.pid",
                 "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
                 "--storage-driver", "overlay2", "--cgroup-parent", f"/{self._cgroup_parent}",
                 "--config-file", self._empty_config()],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.base_environment,
                start_new_session=True)  # a terminal's ^C reaches the bench, which stops it in order
        finally:
            log.close()
        deadline = time.monotonic() + self.timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"dockerd exited ({self.process.returncode}): {self._log_tail()}")
            result = self.docker("version", "--format", "{{.Server.Version}}", check=False)
            if result.returncode == 0:
                self.version = result.stdout.decode().strip()
                self.ready = True
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not answer `docker version` in {self.timeout:.0f} s: "
                                   f"{self._log_tail()}")
            time.sleep(0.1)

    def _empty_config(self) -> str:
        """An empty daemon.json of its own: the system's /etc/docker/daemon.json is not read."""
        path = os.path.join(self.directory, "daemon.json")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("{}\n")
        return path

    def _log_tail(self, lines: int = 8) -> str:
        try:
            with open(os.path.join(self.directory, "dockerd.log"), encoding="utf-8", errors="replace") as handle:
                return " | ".join(line.strip() for line in handle.readlines()[-lines:])
        except OSError as error:
            return f"(no log: {error})"

    def stop(self) -> None:
        """Stop the daemon and remove everything it made; fills ``leftovers``."""
        self.ready = False
        if not self.directory or self._stopped:
            return
        self._stopped = True
        pid = self.process.pid if self.process is not None else None
        try:
            with open(os.path.join(self.directory, "docker.pid"), encoding="ascii") as handle:
                pid = int(handle.read().strip() or pid or 0) or pid
        except (OSError, ValueError):
            pass
        if pid is not None:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if self.process is not None and self.process.pid == pid:
                try:
                    self.process.wait(40)  # dockerd stops its containers (15 s each at most) first
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            else:
                _wait_gone([pid], 40)
        # whatever is left: containerd, shims, and the containers' processes (by cgroup)
        stragglers = _processes_naming(self.directory) + self._cgroup_processes()
        for straggler in stragglers:
            try:
                os.kill(straggler, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.process is not None and self.process.poll() is None:
            self.process.wait(10)
        _wait_gone(stragglers, 10)
        for target in reversed(_mounts_under(self.directory)):
            subprocess.run(["umount", "-l", target], capture_output=True, check=False)
        self._remove_cgroups()
        for path in RUNTIME_DIRECTORIES:
            if path not in self._existed:
                try:
                    os.rmdir(path)
                except OSError:
                    pass
        shutil.rmtree(self.directory, ignore_errors=True)
        self.leftovers = self._check()

    # -- clean-up helpers ----------------------------------------------------------------------

    def _cgroup_paths(self, name: str) -> list[str]:
        return [os.path.join(hierarchy, name) for hierarchy in _hierarchies()]

    def _cgroup_processes(self) -> list[int]:
        pids = []
        for top in self._cgroup_paths(self._cgroup_parent):
            for directory, _, _ in os.walk(top):
                try:
                    with open(os.path.join(directory, "cgroup.procs"), encoding="ascii") as handle:
                        pids += [int(line) for line in handle if line.strip()]
                except OSError:
                    continue
        return sorted(set(pids))

    def _remove_cgroups(self) -> None:
        tops = self._cgroup_paths(self._cgroup_parent)
        tops += [path for path in self._cgroup_paths("docker") if path not in self._existed]
        for top in tops:
            for directory, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
                try:
                    os.rmdir(directory)
                except OSError:
                    pass

    def _check(self) -> list[str]:
        found = []
        if self.directory and os.path.exists(self.directory):
            found.append(f"{self.directory} is still there")
        found += [f"process {pid} naming {self.directory}" for pid in _processes_naming(self.directory)]
        found += [f"mount {target}" for target in _mounts_under(self.directory)]
        found += [f"cgroup {path}" for path in self._cgroup_paths(self._cgroup_parent) if os.path.exists(path)]
        found += [f"cgroup {path}" for path in self._cgroup_paths("docker")
                  if path not in self._existed and os.path.exists(path)]
        # Docker's own device names (docker0, br-<network>): other engines' devices may come and go
        found += [f"network interface {name}" for name in sorted(_links() - self._links)
                  if name.startswith(("docker", "br-"))]
        return found
