"""``lamina volume ...`` end to end: main() -> APIClient -> in-process transport -> router ->
the real engine services on a temporary data root; output like docker's, exit codes from the
table."""

from __future__ import annotations

import json
import os

import pytest


@pytest.fixture
def services(monkeypatch, tmp_path) -> str:
    """Overrides the CLI conftest's double: the real services, built from the data root."""
    for name in ("LAMINA_HOST", "DOCKER_HOST", "LAMINA_STORAGE_DRIVER", "LAMINA_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    data_root = str(tmp_path / "data")
    monkeypatch.setenv("LAMINA_DATA_ROOT", data_root)
    return data_root


def test_create_ls_inspect_rm(lamina, services: str) -> None:
    assert lamina("volume", "create", "data", "--label", "app=web", "--label", "flag").out == "data\n"
    anonymous = lamina("volume", "create").out.strip()
    assert len(anonymous) == 64
    listing = lamina("volume", "ls")
    assert listing.code == 0
    lines = listing.out.splitlines()
    assert lines[0].split() == ["DRIVER", "VOLUME", "NAME"] and lines[0].startswith("DRIVER    VOLUME NAME")
    assert sorted(line.split()[1] for line in lines[1:]) == sorted([anonymous, "data"])
    assert all(line.startswith("local     ") for line in lines[1:])
    assert sorted(lamina("volume", "ls", "-q").out.split()) == sorted([anonymous, "data"])
    inspected = lamina("volume", "inspect", "data")
    assert inspected.out.startswith("[\n    {\n")
    [volume] = json.loads(inspected.out)
    assert volume["Labels"] == {"app": "web", "flag": ""}
    assert volume["Mountpoint"] == os.path.join(services, "volumes", "data", "_data")
    assert lamina("volume", "inspect", "-f", "{{.Name}} {{.Driver}} {{.Scope}}", "data").out == "data local local\n"
    assert lamina("volume", "rm", "data", anonymous).out == f"data\n{anonymous}\n"
    assert lamina("volume", "ls", "-q").out == ""


def test_ls_filters_and_formats(lamina) -> None:
    lamina("volume", "create", "alpha", "--label", "team=a")
    lamina("volume", "create", "beta")
    assert lamina("volume", "ls", "-q", "--filter", "label=team").out == "alpha\n"
    assert lamina("volume", "ls", "-q", "-f", "name=bet").out == "beta\n"
    assert lamina("volume", "ls", "-q", "-f", "dangling=true").out == "alpha\nbeta\n"
    assert lamina("volume", "ls", "--format", "{{.Name}}:{{.Labels}}").out == "alpha:team=a\nbeta:\n"
    rows = [json.loads(line) for line in lamina("volume", "ls", "--format", "json").out.splitlines()]
    assert [row["Name"] for row in rows] == ["alpha", "beta"] and rows[0]["Driver"] == "local"
    table = lamina("volume", "ls", "--format", "table {{.Name}}\t{{.Scope}}").out.splitlines()
    assert table[0].split() == ["VOLUME", "NAME", "SCOPE"]
    bad = lamina("volume", "ls", "-f", "colour=red")
    assert (bad.code, bad.err) == (3, "Error response from daemon: invalid filter 'colour'\n")


def test_create_with_options_and_errors(lamina) -> None:
    created = lamina("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "--opt", "o=size=1m", "cache")
    assert created.code == 0
    [volume] = json.loads(lamina("volume", "inspect", "cache").out)
    assert volume["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    unknown_driver = lamina("volume", "create", "-d", "flocker", "x1")
    assert unknown_driver.code == 4
    assert unknown_driver.err == ('Error response from daemon: create x1: error looking up volume plugin '
                                  'flocker: plugin "flocker" not found\n')
    bad_name = lamina("volume", "create", "a/b")
    assert bad_name.code == 3 and "includes invalid characters" in bad_name.err
    bad_option = lamina("volume", "create", "-o", "nonsense", "x2")
    assert bad_option.code == 2 and "expected KEY=VALUE" in bad_option.err
    conflicting = lamina("volume", "create", "--name", "one", "two")
    assert conflicting.code == 2 and "conflicting options" in conflicting.err


def test_inspect_and_rm_of_missing_volumes(lamina) -> None:
    lamina("volume", "create", "real")
    inspected = lamina("volume", "inspect", "real", "ghost")
    assert inspected.code == 4
    assert [volume["Name"] for volume in json.loads(inspected.out)] == ["real"]
    assert inspected.err == "Error: No such volume: ghost\n"
    removed = lamina("volume", "rm", "ghost", "real")
    assert (removed.code, removed.out, removed.err) == (4, "real\n", "Error: No such volume: ghost\n")
    forced = lamina("volume", "rm", "-f", "ghost")
    assert (forced.code, forced.out) == (0, "ghost\n")


def test_rm_of_a_volume_in_use_is_a_conflict(lamina, services: str) -> None:
    from lamina.volume.store import VolumeStore

    lamina("volume", "create", "busy")
    VolumeStore(os.path.join(services, "volumes")).acquire("busy", "c" * 64)
    for flags in ((), ("-f",)):
        result = lamina("volume", "rm", *flags, "busy")
        assert result.code == 5
        assert result.err == f"Error response from daemon: remove busy: volume is in use - [{'c' * 64}]\n"


def test_prune(lamina, services: str) -> None:
    anonymous = lamina("volume", "create").out.strip()
    with open(os.path.join(services, "volumes", anonymous, "_data", "blob"), "wb") as handle:
        handle.write(b"x" * 1500)
    lamina("volume", "create", "named")
    cancelled = lamina("volume", "prune", stdin=b"n\n")
    assert cancelled.code == 1 and "volume prune has been cancelled" in cancelled.err
    assert "WARNING! This will remove anonymous local volumes not used by at least one container." in cancelled.out
    result = lamina("volume", "prune", stdin=b"y\n")
    assert result.code == 0
    assert result.out.endswith(f"Deleted Volumes:\n{anonymous}\n\nTotal reclaimed space: 1.5kB\n")
    assert lamina("volume", "prune", "-f").out == "Total reclaimed space: 0B\n"
    everything = lamina("volume", "prune", "-a", "-f")
    assert everything.out == "Deleted Volumes:\nnamed\n\nTotal reclaimed space: 0B\n"
    assert lamina("volume", "prune", "-a", "--filter", "all=1", "-f").code == 2


def test_system_df_counts_volumes(lamina, services: str) -> None:
    lamina("volume", "create", "data")
    with open(os.path.join(services, "volumes", "data", "_data", "blob"), "wb") as handle:
        handle.write(b"x" * 2000)
    lines = lamina("system", "df").out.splitlines()
    volumes_line = next(line for line in lines if line.startswith("Local Volumes"))
    assert volumes_line.split()[2:5] == ["1", "0", "2kB"]
    verbose = lamina("system", "df", "-v").out
    assert "data" in verbose.split("Local Volumes space usage:")[1]


def test_volume_group_help(lamina) -> None:
    result = lamina("volume")
    assert result.code == 0
    for word in ("create", "inspect", "ls", "prune", "rm"):
        assert f"  {word}" in result.out


# -- run/create flags, end to end (a separate lamina process, real containers) -----------------

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "busybox-docker-archive.tar")


class Program:
    """``python -m lamina.cli.main`` on its own data root and (short, for sockets) exec root."""

    def __init__(self, root: str) -> None:
        import sys

        self.root = root
        self.command = [sys.executable, "-m", "lamina.cli.main"]
        self.environment = dict(os.environ, LAMINA_DATA_ROOT=os.path.join(root, "data"),
                                LAMINA_EXEC_ROOT=os.path.join(root, "run"),
                                PYTHONPYCACHEPREFIX=os.path.join(root, "pycache"))
        for name in ("LAMINA_HOST", "DOCKER_HOST", "LAMINA_STORAGE_DRIVER"):
            self.environment.pop(name, None)

    def __call__(self, *argv: str):
        import subprocess

        return subprocess.run([*self.command, *argv], capture_output=True, text=True, env=self.environment,
                              timeout=60, check=False)

    def ok(self, *argv: str) -> str:
        result = self(*argv)
        assert result.returncode == 0, f"lamina {' '.join(argv)}: {result.returncode}\n{result.stderr}"
        return result.stdout


@pytest.fixture(scope="module")
def program():
    import shutil
    import signal
    import tempfile

    if os.geteuid() != 0:
        pytest.skip("needs root (mounts, namespaces, cgroups)")
    root = tempfile.mkdtemp(prefix="lvol-", dir="/tmp")
    runner = Program(root)
    try:
        runner.ok("load", "-i", FIXTURE)
        yield runner
    finally:
        from lamina import errdefs
        from lamina import mount as lmount
        from lamina.runtime.cgroups import CgroupManager

        ids = runner("ps", "-aq", "--no-trunc").stdout.split()
        if ids:
            runner("rm", "-f", "-v", *ids)
        runs = os.path.join(root, "run", "containers")
        for container_id in os.listdir(runs) if os.path.isdir(runs) else []:
            manager = CgroupManager(f"lamina/{container_id}")
            if manager.exists():
                try:
                    manager.kill_all(signal.SIGKILL)
                    manager.remove(timeout=5)
                except errdefs.LaminaError:
                    pass
        from lamina.network.run import RunNetwork

        RunNetwork(os.path.join(root, "data"), os.path.join(root, "run")).remove_bridges()
        lmount.unmount_all_under(root)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.privileged
def test_run_with_named_and_anonymous_volumes(program: Program) -> None:
    program.ok("run", "--rm", "-v", "cli-data:/data", "-v", "/scratch", "busybox", "sh", "-c",
               "echo hello > /data/greeting; echo temp > /scratch/t")
    [volume] = json.loads(program.ok("volume", "inspect", "cli-data"))
    with open(os.path.join(volume["Mountpoint"], "greeting")) as handle:
        assert handle.read() == "hello\n"
    anonymous = program.ok("volume", "ls", "-q", "--filter", "label=com.docker.volume.anonymous")
    assert anonymous == "", "run --rm removed the anonymous volume"
    assert program.ok("run", "--rm", "-v", "cli-data:/data:ro", "busybox", "cat", "/data/greeting") == "hello\n"


@pytest.mark.privileged
def test_run_with_mount_tmpfs_and_volumes_from(program: Program) -> None:
    out = program.ok("run", "--rm", "--mount", "type=tmpfs,target=/t,tmpfs-size=1m", "--tmpfs", "/u:size=2m",
                     "busybox", "sh", "-c", "df -k /t /u | tail -2")
    assert [line.split()[1] for line in out.splitlines()] == ["1024", "2048"]
    provider = program.ok("create", "--name", "cli-provider", "--mount", "source=cli-shared,target=/shared",
                          "busybox", "true").strip()
    refused = program("run", "--rm", "--volumes-from", "cli-provider:ro", "busybox", "touch", "/shared/x")
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr + refused.stdout
    in_use = program("volume", "rm", "cli-shared")
    assert in_use.returncode == 5
    assert in_use.stderr == f"Error response from daemon: remove cli-shared: volume is in use - [{provider}]\n"
    program.ok("rm", "-v", "cli-provider")
    assert program.ok("volume", "rm", "cli-shared") == "cli-shared\n"


@pytest.mark.privileged
def test_bad_volume_flags(program: Program) -> None:
    bad_mount = program("run", "--rm", "--mount", "target=/x,colour=red", "busybox", "true")
    assert bad_mount.returncode == 125
    assert "invalid argument \"target=/x,colour=red\" for \"--mount\" flag: unexpected key 'colour'" in bad_mount.stderr
    relative = program("run", "--rm", "-v", "rel/path:/x", "busybox", "true")
    assert relative.returncode != 0
    assert "If you intended to pass a host directory, use absolute path" in relative.stderr
    duplicate = program("create", "-v", "/tmp:/x", "-v", "other:/x", "busybox", "true")
    assert duplicate.returncode != 0 and "Duplicate mount point: /x" in duplicate.stderr
    assert program.ok("ps", "-aq") == ""
