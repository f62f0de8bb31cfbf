"""Rootless containers' bridge network: a namespace per container connected by pasta, published
ports, and what a stop, a killed monitor or an unusable ``/dev/net/tun`` leave.

All traffic goes to 127.0.0.1, where pasta listens for the published ports and hands the
connections to the container's namespace (made by the test's user): nothing leaves the host.
The user is the module's (:mod:`rootless.users`), removed with every process it has at the end.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator

import pytest

from lamina.container.rundir import RunDirectory
from rootless.users import LAMINA, User, data_root, processes_of, tun_mode

pytestmark = pytest.mark.privileged

HTTPD = "mkdir -p /www && echo served-$0 > /www/index.html && exec httpd -f -p 80 -h /www"


def _assert_free(port: int) -> None:
    """Nothing listens on TCP ``port`` any more (connections of other processes may use it)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as handle:
            for line in handle.read().splitlines()[1:]:
                fields = line.split()
                assert not (int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A"), line


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A free port below the ephemeral range: no connection of another test takes it meanwhile."""
    with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as handle:
        ephemeral = int(handle.read().split()[0])
    for _ in range(100):
        port = random.randrange(10000, max(ephemeral, 10001))
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below the ephemeral range")


def _wait_for(condition: Callable[[], object], what: str, seconds: float = 20.0) -> object:
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _fetch(port: int) -> bytes | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            return response.read()
    except OSError:
        return None


def _pastas_of(user: User) -> list[int]:
    """The user's pasta processes (they run as the user, in its rootless user namespace)."""
    found = []
    for pid in processes_of(user.uid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if os.path.basename(handle.read().split(b"\0")[0]) == b"pasta":
                    found.append(pid)
        except OSError:
            continue
    return found


def _exec_root(user: User) -> str:
    return os.path.join(user.runtime_dir, "lamina")


def _leftovers(user: User) -> list[str]:
    """What the user's pasta networks keep under the exec root (records, pid files, namespaces)."""
    found = []
    for directory in ("pasta", "netns"):
        try:
            found += [f"{directory}/{name}" for name in os.listdir(os.path.join(_exec_root(user), directory))
                      if name != "lock"]
        except FileNotFoundError:
            pass
    return found


@pytest.fixture
def names(user: User) -> Iterator[list[str]]:
    """Containers the test names; removed (by force) after it."""
    made: list[str] = []
    yield made
    for name in made:
        user.lamina("rm", "-f", name)


def _name(names: list[str]) -> str:
    name = "n" + uuid.uuid4().hex[:10]
    names.append(name)
    return name


def _inspect(user: User, name: str) -> dict:
    return json.loads(user.ok("inspect", name))[0]


@pytest.mark.usefixtures("debian_tun")
def test_the_bridge_network_is_eth0_from_pasta_and_stop_removes_pasta(user: User, names: list[str]) -> None:
    name = _name(names)
    user.ok("run", "-d", "--name", name, "busybox", "sleep", "300")
    settings = _inspect(user, name)["NetworkSettings"]
    container_id = _inspect(user, name)["Id"]
    assert settings["SandboxKey"] == os.path.join(_exec_root(user), "netns", container_id)
    bridge = settings["Networks"]["bridge"]
    assert bridge["IPAddress"] and bridge["Gateway"] and bridge["MacAddress"]
    assert (settings["IPAddress"], settings["MacAddress"]) == (bridge["IPAddress"], bridge["MacAddress"])
    inside = user.ok("exec", name, "sh", "-c", "ls /sys/class/net; cat /sys/class/net/eth0/address; "
                     "ip -4 -o addr show eth0; ip route; cat /etc/resolv.conf /etc/hosts")
    assert inside.split()[:3] == ["eth0", "lo", bridge["MacAddress"]]
    assert f"inet {bridge['IPAddress']}/{bridge['IPPrefixLen']}" in inside
    assert f"default via {bridge['Gateway']} dev eth0" in inside
    assert "nameserver 169.254.1.1" in inside  # pasta's DNS forwarder
    assert f"{bridge['IPAddress']}\t{container_id[:12]}" in inside
    pastas = _pastas_of(user)
    assert len(pastas) == 1
    with open(f"/proc/{pastas[0]}/cmdline", "rb") as handle:
        assert settings["SandboxKey"].encode() in handle.read().split(b"\0")

    user.ok("stop", "-t", "0", name)
    assert _pastas_of(user) == [] and _leftovers(user) == []
    assert _inspect(user, name)["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] == ""
    # and again: a second run gets a network of its own
    user.ok("start", name)
    assert len(_pastas_of(user)) == 1
    user.ok("rm", "-f", name)
    assert _pastas_of(user) == [] and _leftovers(user) == []


@pytest.mark.usefixtures("debian_tun")
def test_dns_servers_given_replace_pastas_forwarder_and_rm_removes_pasta(user: User) -> None:
    out = user.ok("run", "--rm", "--dns", "10.1.2.3", "busybox", "sh", "-c", "cat /etc/resolv.conf; ls /sys/class/net")
    assert "nameserver 10.1.2.3" in out and "169.254.1.1" not in out and "eth0" in out.split()
    # an --rm run's network goes after the run returned (off its waiters' path)
    _wait_for(lambda: not _pastas_of(user) and not _leftovers(user), "the --rm run's pasta to be gone")


@pytest.mark.usefixtures("debian_tun")
def test_none_and_host_need_no_pasta(user: User) -> None:
    assert user.ok("run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net").split() == ["lo"]
    host = os.readlink("/proc/self/ns/net")
    assert user.ok("run", "--rm", "--network", "host", "busybox", "readlink", "/proc/self/ns/net").strip() == host
    assert _pastas_of(user) == [] and _leftovers(user) == []


@pytest.mark.usefixtures("debian_tun")
def test_a_published_tcp_port_answers_and_port_shows_it(user: User, names: list[str]) -> None:
    name, port = _name(names), _free_port()
    user.ok("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c", HTTPD, name)
    assert _wait_for(lambda: _fetch(port), "the published port") == f"served-{name}\n".encode()
    assert user.ok("port", name).strip() == f"80/tcp -> 127.0.0.1:{port}"
    assert _inspect(user, name)["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1",
                                                                             "HostPort": str(port)}]}
    user.ok("rm", "-f", name)
    assert _pastas_of(user) == [] and _leftovers(user) == []
    _assert_free(port)


# a UDP echo server on the port given as argv[1]: the image's busybox has none (its nc has no
# -u), so the host's python, bind-mounted read-only
UDP_ECHO = ("import socket, sys\n"
            "server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "server.bind(('0.0.0.0', int(sys.argv[1])))\n"
            "while True:\n"
            "    data, peer = server.recvfrom(512)\n"
            "    server.sendto(b'echo:' + data, peer)\n")
HOST_PYTHON = "/usr/bin/python3"


@pytest.mark.usefixtures("debian_tun")
def test_a_published_udp_port_answers(user: User, names: list[str]) -> None:
    """A UDP echo server behind ``-p PORT:PORT/udp`` answers a datagram sent to 127.0.0.1:PORT.

    The same port on both sides: Debian 12's pasta (passt 0.0~git20230309) loses the replies of
    a UDP flow whose port it translates (``-p 5353:53/udp``), a bug of that version."""
    python = os.path.realpath(HOST_PYTHON)
    if not python.startswith("/usr/") or not os.path.isdir("/usr/lib64"):
        pytest.skip("no merged-/usr python3 on the host to bind-mount")
    name, port = _name(names), _free_port(socket.SOCK_DGRAM)
    user.ok("run", "-d", "--name", name, "-p", f"{port}:{port}/udp", "-v", "/usr:/usr:ro", "-v", "/usr/lib:/lib:ro",
            "-v", "/usr/lib64:/lib64:ro", "busybox", python, "-c", UDP_ECHO, str(port))
    assert user.ok("port", name, f"{port}/udp").strip() == f"0.0.0.0:{port}"

    def answer() -> bytes | None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(0.5)
            client.sendto(b"ping", ("127.0.0.1", port))
            try:
                return client.recv(512)
            except OSError:
                return None

    assert _wait_for(answer, "an answer through the published UDP port") == b"echo:ping"


@pytest.mark.usefixtures("debian_tun")
def test_random_host_ports_show_in_port(user: User, names: list[str]) -> None:
    name = _name(names)
    user.ok("run", "-d", "--name", name, "--expose", "81", "-P", "-p", "80", "busybox", "sh", "-c", HTTPD, name)
    lines = sorted(user.ok("port", name).strip().splitlines())
    assert [line.split(" -> ")[0] for line in lines] == ["80/tcp", "81/tcp"]
    ports = {line.split(" -> ")[0]: int(line.rsplit(":", 1)[1]) for line in lines}
    assert all(port >= 1024 for port in ports.values()) and ports["80/tcp"] != ports["81/tcp"]
    assert _wait_for(lambda: _fetch(ports["80/tcp"]), "the random port") == f"served-{name}\n".encode()


@pytest.mark.usefixtures("debian_tun")
def test_a_taken_host_port_is_refused_with_nothing_left(user: User, names: list[str]) -> None:
    before = user.ok("ps", "-aq")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = user.lamina("run", "--rm", "-p", f"127.0.0.1:{port}:80", "busybox", "true")
        assert result.returncode != 0
        assert f"Bind for 127.0.0.1:{port} failed: port is already allocated".encode() in result.stderr
    assert user.ok("ps", "-aq") == before
    assert _pastas_of(user) == [] and _leftovers(user) == []

    # two containers cannot take one host port: the second is refused, the first keeps it
    first, second, port = _name(names), _name(names), _free_port()
    user.ok("run", "-d", "--name", first, "-p", f"{port}:80", "busybox", "sh", "-c", HTTPD, first)
    result = user.lamina("run", "-d", "--name", second, "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c",
                         HTTPD, second)
    assert result.returncode != 0 and b"port is already allocated" in result.stderr
    assert _wait_for(lambda: _fetch(port), "the first container's port") == f"served-{first}\n".encode()
    assert len(_pastas_of(user)) == 1


@pytest.mark.usefixtures("debian_tun")
def test_a_killed_monitor_leaves_nothing_after_the_sweep(user: User, names: list[str]) -> None:
    name, port = _name(names), _free_port()
    container_id = user.ok("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c",
                           HTTPD, name).strip()
    _wait_for(lambda: _fetch(port), "the published port")
    monitor = RunDirectory(_exec_root(user), container_id).monitor_pid()
    assert monitor is not None and len(_pastas_of(user)) == 1
    os.kill(monitor, signal.SIGKILL)
    _wait_for(lambda: monitor not in processes_of(user.uid), "the monitor to die")
    assert len(_pastas_of(user)) == 1  # pasta outlives the monitor: the sweep's to stop
    # the start-up sweep of the next command that opens the containers stops it (and a
    # --repair would, with the same teardown)
    check = user.lamina("system", "check", "--repair")
    assert check.returncode == 0 and check.stdout == b"no problems found\n", check
    assert _pastas_of(user) == [] and _leftovers(user) == []
    assert _inspect(user, name)["State"]["Running"] is False
    _assert_free(port)


def test_without_a_usable_tun_device_the_error_names_it(user: User) -> None:
    before = user.ok("ps", "-aq")
    with tun_mode(0o600):  # this host's own mode, whatever it is now
        result = user.lamina("run", "--rm", "-p", f"127.0.0.1:{_free_port()}:80", "busybox", "true")
        assert result.returncode != 0
        assert b"/dev/net/tun" in result.stderr and b"mode 0600" in result.stderr, result.stderr
        assert user.ok("ps", "-aq") == before
        assert _pastas_of(user) == [] and _leftovers(user) == []
        info = json.loads(user.ok("info", "--format", "{{json .}}"))
        assert "bridge" not in info["Plugins"]["Network"]
        assert any("/dev/net/tun" in warning for warning in info["Warnings"])
        # the networks that need no tap device still work
        assert user.ok("run", "--rm", "--network", "none", "busybox", "echo", "fine").strip() == "fine"


@pytest.mark.usefixtures("debian_tun")
def test_docker_run_publishes_through_rootless_serve(user: User) -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI")
    socket_path = os.path.join(user.runtime_dir, "lamina.sock")
    server = subprocess.Popen(user.command(LAMINA, "serve"), env=user.environment(), cwd=user.runtime_dir,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    environment = user.environment(DOCKER_HOST=f"unix://{socket_path}")
    name, port = "d" + uuid.uuid4().hex[:10], _free_port()

    def docker_run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(user.command(docker, *args), env=environment, capture_output=True, timeout=120)

    try:
        _wait_for(lambda: os.path.exists(socket_path) or server.poll() is not None, "the server's socket", 30)
        assert server.poll() is None
        done = docker_run("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c",
                          HTTPD, name)
        assert done.returncode == 0, done.stderr
        assert _wait_for(lambda: _fetch(port), "the published port") == f"served-{name}\n".encode()
        shown = docker_run("port", name)
        assert shown.stdout.decode().strip() == f"80/tcp -> 127.0.0.1:{port}", shown.stderr
        assert docker_run("rm", "-f", name).returncode == 0
        assert _pastas_of(user) == [] and _leftovers(user) == []
        # the docker CLI's EndpointsConfig {"default": ...} touched no rootful network store
        assert not os.path.exists(os.path.join(data_root(user), "network"))
    finally:
        docker_run("rm", "-f", name)
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
