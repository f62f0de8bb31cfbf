"""The start-up cost of the commands that must be quick (DESIGN.md §1): ``lamina images`` and
``lamina run --rm IMAGE true`` in-process import only what they use, the storage driver probe
is not repeated, the seccomp filter is compiled once, and ``lamina.archive`` loads its parts
on first use.  Each command runs in a fresh interpreter, as a user's shell runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from lamina.config import EngineConfig
from lamina.graphdriver import registry
from lamina.services.compose import build_services

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "busybox-docker-archive.tar")

# modules that neither command needs (archives, registries, builds, the --change engine) or that
# cost a lot for little (uuid and platform ~4 ms, secrets loads OpenSSL's HMAC, ctypes.util runs
# ldconfig, importlib.resources)
NEVER = ("lamina.archive.tarstream", "lamina.archive.extract", "lamina.archive.changes",
         "lamina.archive.compression", "lamina.archive.tarsplit", "lamina.distribution", "lamina.build",
         "lamina.dockerfile", "lamina.image.changes", "lamina.server", "uuid", "platform", "secrets",
         "ctypes.util", "importlib.resources", "tarfile", "rich", "http.client")
# OpenSSL (~3 ms to load): listing and inspecting hash only small values (lamina.digest's
# built-in sha256); the client's socket code: the in-process path never pings a daemon
NO_OPENSSL = ("hashlib", "_hashlib")


def _command(data_root: str, exec_root: str, *arguments: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    code = ("import json, sys\nfrom lamina.cli.main import main\ncode = main(sys.argv[1:])\n"
            "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\nsys.exit(code)")
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("LAMINA_HOST", "DOCKER_HOST", "LAMINA_STORAGE_DRIVER")}
    environment["LAMINA_EXEC_ROOT"] = exec_root
    completed = subprocess.run([sys.executable, "-c", code, "--data-root", data_root, *arguments], cwd=ROOT,
                               env=environment, capture_output=True, text=True, timeout=120, check=False)
    modules = set(json.loads(completed.stderr.strip().splitlines()[-1]))
    return completed, modules


def _loaded(found: set[str], names: tuple[str, ...]) -> set[str]:
    return {module for module in found if module.startswith(names) and
            any(module == name or module.startswith(name + ".") for name in names)}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root (mounts, namespaces, cgroups)")
    base = tmp_path_factory.mktemp("hot-path")
    config = EngineConfig(data_root=str(base / "data"), exec_root=str(base / "run"))
    services = build_services(config)
    with open(FIXTURE, "rb") as handle:
        services.images.load(handle, progress=lambda message: None)
    yield config
    from lamina import mount as lmount
    from lamina.network.run import RunNetwork

    RunNetwork(config.data_root, config.exec_root).remove_bridges()
    lmount.unmount_all_under(str(base))


@pytest.mark.privileged
def test_images_imports_neither_the_container_engine_nor_archives(engine) -> None:
    completed, modules = _command(engine.data_root, engine.exec_root, "images")
    assert completed.returncode == 0, completed.stderr
    assert "busybox" in completed.stdout
    assert _loaded(modules, NEVER + NO_OPENSSL + ("lamina.client.unix",)) == set()
    assert _loaded(modules, ("lamina.services.containers", "lamina.container.store", "lamina.container.monitor",
                             "lamina.container.spec", "lamina.runtime", "lamina.volume",
                             "lamina.services.builds")) == set()


@pytest.mark.privileged
def test_ps_and_inspect_import_neither_archives_nor_the_run_machinery(engine) -> None:
    completed, _ = _command(engine.data_root, engine.exec_root, "create", "--name", "hot-path", "busybox", "true")
    assert completed.returncode == 0, completed.stderr
    for arguments, shown in ((("ps", "-a"), "hot-path"), (("inspect", "hot-path"), '"Name": "/hot-path"')):
        completed, modules = _command(engine.data_root, engine.exec_root, *arguments)
        assert completed.returncode == 0, completed.stderr
        assert shown in completed.stdout
        assert _loaded(modules, NEVER + NO_OPENSSL + ("lamina.client.unix",)) == set(), arguments
        # listing and inspecting run nothing: no runtime, no container spec, no build or volume service
        assert _loaded(modules, ("lamina.runtime.native", "lamina.runtime.oci", "lamina.container.spec",
                                 "lamina.services.builds", "lamina.services.volumes", "lamina.volume.store",
                                 "lamina.container.monitor.server")) == set(), arguments
    completed, _ = _command(engine.data_root, engine.exec_root, "rm", "hot-path")
    assert completed.returncode == 0, completed.stderr


# the network stack: what sets sandboxes up and tears them down (netavark, the CNI bridge plugin,
# aardvark-dns, namespaces), ~10-20 ms of imports
NETWORK_STACK = ("lamina.network.sandbox", "lamina.network.cni", "lamina.network.netavark",
                 "lamina.network.aardvark", "lamina.network.namespace")


@pytest.mark.privileged
def test_commands_beside_a_running_bridged_container_open_no_network_stack(engine) -> None:
    """Every command's engine sweeps the sandboxes of dead runs: a live container's sandbox
    record is not read for that, and ``inspect`` reads a running container's record through
    the network store alone."""
    completed, _ = _command(engine.data_root, engine.exec_root, "run", "-d", "--name", "hot-bridged", "busybox",
                            "sleep", "600")
    assert completed.returncode == 0, completed.stderr
    try:
        completed, modules = _command(engine.data_root, engine.exec_root, "ps")
        assert completed.returncode == 0, completed.stderr
        assert "hot-bridged" in completed.stdout
        assert _loaded(modules, NETWORK_STACK + ("lamina.network.store",)) == set()
        completed, modules = _command(engine.data_root, engine.exec_root, "inspect", "--format",
                                      "{{.NetworkSettings.Networks.bridge.IPAddress}}", "hot-bridged")
        assert completed.returncode == 0, completed.stderr
        assert completed.stdout.strip().count(".") == 3, completed.stdout  # the sandbox's address
        assert _loaded(modules, NETWORK_STACK) == set()
    finally:
        completed, _ = _command(engine.data_root, engine.exec_root, "rm", "-f", "hot-bridged")
        assert completed.returncode == 0, completed.stderr


@pytest.mark.privileged
def test_run_rm_true_imports_only_what_running_needs(engine) -> None:
    completed, modules = _command(engine.data_root, engine.exec_root, "run", "--rm", "busybox", "true")
    assert completed.returncode == 0, completed.stderr
    assert _loaded(modules, NEVER) == set()
    assert _loaded(modules, ("lamina.services.volumes", "lamina.volume.store")) == set()  # no volumes used
    # the image is resolved through the reference store: the kept image list is for listings
    assert _loaded(modules, ("lamina.services.image_listing", "lamina.image.listing")) == set()
    # the runtime is opened by the monitor template, not by the command (it would cost every run
    # the runtime's imports and set-up, ~5 ms)
    assert _loaded(modules, ("lamina.runtime.native", "lamina.runtime.child", "lamina.runtime.oci",
                             "lamina.runtime.cgroups", "lamina.runtime.seccomp")) == set()
    # the container is gone, its name's link too; what stays is the name lock and the name
    # index, empty but for its boot marker (its directories are deleted by its monitor after
    # ``run --rm`` returned: waited for, briefly)
    deadline = time.monotonic() + 10
    containers = os.path.join(engine.data_root, "containers")
    while (not set(os.listdir(containers)) <= {".names.lock", ".names"}
           or set(os.listdir(os.path.join(containers, ".names"))) - {".boot"}):
        assert time.monotonic() < deadline, (os.listdir(containers), os.listdir(os.path.join(containers, ".names")))
        time.sleep(0.01)


@pytest.mark.privileged
def test_run_rm_without_a_network_loads_no_openssl(tmp_path) -> None:
    """The monitor template's key is hashed with the built-in sha256: OpenSSL's load (~3 ms)
    stays off the run path when no network needs a hashed name (an engine of its own: no
    bridge run's teardown in progress, whose sweep would load the network code)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (mounts, namespaces, cgroups)")
    config = EngineConfig(data_root=str(tmp_path / "data"), exec_root=str(tmp_path / "run"))
    services = build_services(config)
    with open(FIXTURE, "rb") as handle:
        services.images.load(handle, progress=lambda message: None)
    try:
        completed, modules = _command(config.data_root, config.exec_root, "run", "--rm", "--network", "none",
                                      "busybox", "true")
        assert completed.returncode == 0, completed.stderr
        assert _loaded(modules, NEVER + NO_OPENSSL) == set()
    finally:
        from lamina import mount as lmount

        lmount.unmount_all_under(str(tmp_path))


@pytest.mark.privileged
def test_version_builds_no_engine_service(engine) -> None:
    completed, modules = _command(engine.data_root, engine.exec_root, "version")
    assert completed.returncode == 0, completed.stderr
    assert "Server: lamina" in completed.stdout
    # /version describes the program: no service, store, driver or image code is loaded
    assert _loaded(modules, NEVER + NO_OPENSSL + ("lamina.services", "lamina.graphdriver", "lamina.image",
                                                  "lamina.layer", "lamina.client.unix")) == set()


@pytest.mark.privileged
def test_the_driver_probe_and_the_seccomp_filter_are_kept_between_commands(engine, tmp_path) -> None:
    record = os.path.join(engine.data_root, "overlay2", registry.PROBE_RECORD)
    if not os.path.isdir(os.path.join(engine.data_root, "overlay2")):
        pytest.skip("overlay2 is not the driver here")
    assert os.path.exists(record)
    before = os.stat(record)
    completed, _ = _command(engine.data_root, engine.exec_root, "run", "--rm", "busybox", "true")
    assert completed.returncode == 0, completed.stderr
    cache = os.path.join(engine.exec_root, "seccomp")
    filters = os.listdir(cache)
    assert len(filters) == 1 and filters[0].endswith(".bpf")
    compiled = os.stat(os.path.join(cache, filters[0]))
    completed, _ = _command(engine.data_root, engine.exec_root, "run", "--rm", "busybox", "true")
    assert completed.returncode == 0, completed.stderr
    again = os.stat(os.path.join(cache, filters[0]))
    assert (again.st_ino, again.st_mtime_ns) == (compiled.st_ino, compiled.st_mtime_ns)  # not compiled again
    after = os.stat(record)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not probed again


def test_the_archive_package_loads_its_parts_on_first_use() -> None:
    code = ("import json, sys\nimport lamina.archive.api\nfrom lamina.graphdriver import overlay2\n"
            "before = sorted(sys.modules)\nfrom lamina.archive import TarReader\n"
            "import lamina.archive as archive\n"
            "print(json.dumps([before, sorted(sys.modules), TarReader.__module__]))")
    output = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    before, after, home = json.loads(output)
    # the vocabulary and overlayfs' marks (os and stat only) are all that the two loaded
    light = ("lamina.archive.api", "lamina.archive.overlayfs")
    assert not [m for m in before if m.startswith("lamina.archive.") and m not in light], before
    assert "lamina.archive.tarstream" in after and home == "lamina.archive.tarstream"


def test_every_archive_export_resolves_to_its_module() -> None:
    import importlib

    import lamina.archive as archive

    for name in archive.__all__:
        value = getattr(archive, name)
        home = importlib.import_module(f"lamina.archive.{archive._HOMES[name]}")
        assert value is getattr(home, name), name
    assert set(archive.__all__) <= set(dir(archive))
    with pytest.raises(AttributeError):
        archive.no_such_name  # noqa: B018


# what only running a container needs: the monitor's client, protocol and recipe, the run
# directory, the runtimes, the volume code, logs, healthchecks, joined namespaces, the network
# vocabulary and store; the client's sockets
RUN_MACHINERY = ("lamina.container.monitor.api", "lamina.container.monitor.client", "lamina.container.monitor.protocol",
                 "lamina.container.rundir", "lamina.runtime", "lamina.volume", "lamina.container.logs",
                 "lamina.container.health", "lamina.container.joining", "lamina.network.api", "lamina.network.store")
# whether a running container's monitor lives is a lock in its run directory, read through the
# monitor client: nothing that starts, attaches to or stops a run
MONITOR_LIVENESS = ("lamina.container.monitor.client", "lamina.container.monitor.protocol", "lamina.container.rundir")


@pytest.mark.privileged
def test_readcontainers_ps_and_inspect_of_a_stopped_container_load_no_run_machinery(engine) -> None:
    completed, _ = _command(engine.data_root, engine.exec_root, "create", "--name", "hot-stopped", "busybox", "true")
    assert completed.returncode == 0, completed.stderr
    try:
        for arguments, shown in ((("ps", "-a"), "hot-stopped"), (("ps",), "NAMES"),
                                 (("inspect", "hot-stopped"), '"Status": "created"')):
            completed, modules = _command(engine.data_root, engine.exec_root, *arguments)
            assert completed.returncode == 0, completed.stderr
            assert shown in completed.stdout, arguments
            assert _loaded(modules, RUN_MACHINERY) == set(), arguments
    finally:
        completed, _ = _command(engine.data_root, engine.exec_root, "rm", "hot-stopped")
        assert completed.returncode == 0, completed.stderr


@pytest.mark.privileged
def test_readcontainers_ps_and_inspect_of_a_running_container_only_ask_whether_its_monitor_lives(engine) -> None:
    completed, _ = _command(engine.data_root, engine.exec_root, "run", "-d", "--network", "none", "--name",
                            "hot-running", "busybox", "sleep", "60")
    assert completed.returncode == 0, completed.stderr
    try:
        completed, modules = _command(engine.data_root, engine.exec_root, "ps")
        assert completed.returncode == 0, completed.stderr
        assert "hot-running" in completed.stdout and " Up " in completed.stdout
        assert _loaded(modules, MONITOR_LIVENESS) == set(MONITOR_LIVENESS)
        assert _loaded(modules, tuple(name for name in RUN_MACHINERY if name not in MONITOR_LIVENESS)) == set()
        completed, modules = _command(engine.data_root, engine.exec_root, "inspect", "--format",
                                      "{{.State.Status}} {{.State.Pid}}", "hot-running")
        assert completed.returncode == 0, completed.stderr
        status, pid = completed.stdout.split()
        assert status == "running" and int(pid) > 0
        # the network store is read for a sandbox record when another test's run left the directory
        assert _loaded(modules, tuple(name for name in RUN_MACHINERY
                                      if name not in MONITOR_LIVENESS + ("lamina.network.api",
                                                                         "lamina.network.store"))) == set()
    finally:
        completed, _ = _command(engine.data_root, engine.exec_root, "rm", "-f", "hot-running")
        assert completed.returncode == 0, completed.stderr


# what reading images never needs: the drivers not in use and overlay2's parts for diffs, remapped
# copies and probes (the probe is recorded), the event log (nothing is emitted), the identity
# mappings of remapped containers, tar-split reassembly, and the container code's times
READ_IMAGES_NEVER = ("lamina.graphdriver.vfs", "lamina.graphdriver.fuseoverlayfs", "lamina.graphdriver.naivediff",
                     "lamina.graphdriver.remapcopy", "lamina.graphdriver.overlay2_kernel", "lamina.events.log",
                     "lamina.idmap", "lamina.layer.reassembly", "lamina.container.state", "lamina.container.logs")
# what a listing answered from its index needs neither: image configs, Go JSON, times, filters
LISTING_NEVER = ("lamina.image.config", "lamina.image.config_fields", "lamina.image.gojson", "lamina.image.rfc3339",
                 "lamina.services.filters", "fnmatch")


@pytest.mark.privileged
def test_reading_images_imports_one_driver_and_no_config_code_for_a_listing(engine) -> None:
    """``images``, ``image inspect`` and ``history`` import the driver in use only, and a
    listing from a current index parses no image config (the index is written by the first
    listing of a settled store: waited for)."""
    index = os.path.join(engine.data_root, "image", "overlay2", "imagedb", "listing.json")
    if not os.path.isdir(os.path.dirname(os.path.dirname(index))):
        pytest.skip("overlay2 is not the driver here")
    deadline = time.monotonic() + 10
    while True:
        completed, modules = _command(engine.data_root, engine.exec_root, "images")
        assert completed.returncode == 0, completed.stderr
        if os.path.exists(index) or time.monotonic() > deadline:
            break
        time.sleep(0.2)  # the stores changed less than a second ago: no index written yet
    completed, modules = _command(engine.data_root, engine.exec_root, "images")
    assert completed.returncode == 0, completed.stderr
    assert "busybox" in completed.stdout
    assert _loaded(modules, READ_IMAGES_NEVER + LISTING_NEVER) == set()
    assert "lamina.graphdriver.overlay2" in modules
    for arguments, shown in ((("image", "inspect", "busybox"), '"RepoTags"'), (("history", "busybox"), "IMAGE")):
        completed, modules = _command(engine.data_root, engine.exec_root, *arguments)
        assert completed.returncode == 0, completed.stderr
        assert shown in completed.stdout
        assert _loaded(modules, NEVER + NO_OPENSSL + READ_IMAGES_NEVER + ("lamina.services.image_listing",)) == set(), \
            arguments


# -- front: what every in-process command pays before its service runs ------------------------

# the client's code for calls a command does not make, the template engine (plain tables do
# without it), the request body schemas (only calls that take a body), the socket transport and
# what only container streams need
FRONT_NEVER = ("lamina.cli.templates", "lamina.api.bodies", "lamina.client.base", "lamina.client.unix",
               "lamina.client.stdio", "lamina.client.build", "lamina.client.distribution", "lamina.client.execs",
               "lamina.client.networks", "lamina.client.volumes", "lamina.client.system")


@pytest.mark.privileged
def test_front_version_loads_neither_typing_nor_threading_nor_other_calls_client_code(engine) -> None:
    """``version`` builds no engine: nothing on its path needs typing (annotations only, under
    ``TYPE_CHECKING``), threading (the router's lock comes from ``_thread``), the stdio stream
    format (its protocol needs typing), or the client code of any call but its own."""
    completed, modules = _command(engine.data_root, engine.exec_root, "version")
    assert completed.returncode == 0, completed.stderr
    assert "Server: lamina" in completed.stdout
    assert _loaded(modules, ("typing", "threading", "lamina.stdcopy", "lamina.client.containers",
                             "lamina.client.images") + FRONT_NEVER[:-1]) == set()
    assert "lamina.client.system" in modules


@pytest.mark.privileged
def test_front_listings_and_inspect_load_only_their_own_client_and_api_code(engine) -> None:
    completed, _ = _command(engine.data_root, engine.exec_root, "create", "--name", "front-path", "busybox", "true")
    assert completed.returncode == 0, completed.stderr
    try:
        for arguments, shown, own in ((("images",), "busybox", "lamina.client.images"),
                                      (("image", "inspect", "busybox"), '"RepoTags"', "lamina.client.images"),
                                      (("ps", "-a"), "front-path", "lamina.client.containers"),
                                      (("inspect", "front-path"), '"Name": "/front-path"', "lamina.client.containers")):
            completed, modules = _command(engine.data_root, engine.exec_root, *arguments)
            assert completed.returncode == 0, completed.stderr
            assert shown in completed.stdout, arguments
            others = {"lamina.client.images", "lamina.client.containers"} - {own}
            assert _loaded(modules, FRONT_NEVER + tuple(others)) == set(), arguments
            assert own in modules
            # the handlers of the command's own requests only
            assert {module for module in modules if module.startswith("lamina.api.")} <= {
                "lamina.api.call", "lamina.api.errors", "lamina.api.http", "lamina.api.params",
                "lamina.api.router", "lamina.api.streams", "lamina.api.unsupported", "lamina.api.versions",
                "lamina.api.images", "lamina.api.containers"}, arguments
        # a template that is more than {{.Field}} actions still gets the engine
        completed, modules = _command(engine.data_root, engine.exec_root, "ps", "-a", "--format", "{{.Names | upper}}")
        assert completed.returncode == 0, completed.stderr
        assert "FRONT-PATH" in completed.stdout.splitlines()
        assert "lamina.cli.templates" in modules
    finally:
        completed, _ = _command(engine.data_root, engine.exec_root, "rm", "front-path")
        assert completed.returncode == 0, completed.stderr


@pytest.mark.privileged
def test_front_commands_sent_to_a_daemon_load_neither_typing_nor_the_engine(engine) -> None:
    """``-H unix://...``: the CLI is only an API client; the transport protocol (which needs
    typing) is for type checkers, the socket code is all it loads beyond the in-process path's
    command and client code."""
    import shutil
    import tempfile

    directory = tempfile.mkdtemp(prefix="lamina-front-", dir="/tmp")  # a short socket path
    host = f"unix://{directory}/lamina.sock"
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("LAMINA_HOST", "DOCKER_HOST", "LAMINA_STORAGE_DRIVER")}
    environment["LAMINA_EXEC_ROOT"] = engine.exec_root
    with open(os.path.join(directory, "serve.log"), "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "lamina.cli.main", "--data-root", engine.data_root,
                                   "serve", "-H", host, "--shutdown-timeout", "3"],
                                  stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=environment)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(f"{directory}/lamina.sock"):
            assert server.poll() is None and time.monotonic() < deadline, "lamina serve did not start"
            time.sleep(0.02)
        for arguments, shown in ((("version",), "Server: lamina"), (("images",), "busybox"),
                                 (("ps", "-a"), "CONTAINER ID"), (("image", "inspect", "busybox"), '"RepoTags"')):
            completed, modules = _command(engine.data_root, engine.exec_root, "-H", host, *arguments)
            assert completed.returncode == 0, completed.stderr
            assert shown in completed.stdout, arguments
            assert "lamina.client.unix" in modules
            assert _loaded(modules, ("typing", "threading", "lamina.api.router", "lamina.services", "lamina.image",
                                     "lamina.container.store", "lamina.cli.templates", "lamina.client.stdio",
                                     "lamina.client.build", "lamina.client.volumes")) == set(), arguments
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(directory, ignore_errors=True)


def test_reading_images_and_containers_loads_neither_typing_nor_threading(engine) -> None:
    """Listing and inspecting images and containers, also a running one, load no ``typing`` (the
    interfaces they name are :mod:`lamina.protocols`'s, the rest is for type checkers) and no
    ``threading`` (the engine's locks are ``_thread``'s): 2.5 and 1 ms of every such command."""
    completed, _ = _command(engine.data_root, engine.exec_root, "run", "-d", "--network", "none", "--name",
                            "untyped-running", "busybox", "sleep", "60")
    assert completed.returncode == 0, completed.stderr
    try:
        for arguments in (("images",), ("image", "inspect", "busybox"), ("history", "busybox"), ("ps",),
                          ("ps", "-a"), ("inspect", "untyped-running")):
            completed, modules = _command(engine.data_root, engine.exec_root, *arguments)
            assert completed.returncode == 0, completed.stderr
            assert completed.stdout.strip(), arguments
            assert _loaded(modules, ("typing", "threading")) == set(), arguments
    finally:
        completed, _ = _command(engine.data_root, engine.exec_root, "rm", "-f", "untyped-running")
        assert completed.returncode == 0, completed.stderr
