"""Container commands of the CLI against the container service double, through the in-process
transport and the real router: output like docker's, exit codes (125/126/127 for run, start -a,
exec), the create body built from flags, cp's copy rules and local-side safety."""

from __future__ import annotations

import io
import json
import os
import pathlib
import re
import time

import pytest
from api.container_service_double import STATS

from lamina.archive import EntryType, TarEntry, TarReader, TarWriter

ID_PATTERN = re.compile(r"^[0-9a-f]{64}$")


def created_body(services) -> dict:
    return [call for call in services.containers.calls if call[0] == "create"][-1][1]["body"]


def container(services, name: str):
    return services.containers._find(name)


# -- run ----------------------------------------------------------------------------------------

def test_run_copies_stdout_and_stderr_and_exits_with_the_container_code(lamina, services) -> None:
    result = lamina("run", "--name", "talker", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (result.code, result.out, result.err) == (3, "out\n", "err\n")
    assert container(services, "talker").status == "exited"
    body = created_body(services)
    assert body["AttachStdout"] and body["AttachStderr"] and not body["AttachStdin"]
    # docker's order: attach, wait, start
    order = [call[0] for call in services.containers.calls if call[0] in ("attach", "wait", "start")]
    assert order == ["attach", "wait", "start"]
    assert [c for c in services.containers.calls if c[0] == "wait"][-1][1]["condition"] == "next-exit"


def test_run_rm_removes_the_container_and_keeps_its_exit_code(lamina, services) -> None:
    result = lamina("run", "--rm", "busybox", "sh", "-c", "exit 5")
    assert result.code == 5
    assert services.containers.containers == {}
    assert created_body(services)["HostConfig"]["AutoRemove"] is True
    assert [c for c in services.containers.calls if c[0] == "wait"][-1][1]["condition"] == "removed"


def test_run_detached_prints_the_full_id(lamina, services) -> None:
    result = lamina("run", "-d", "--name", "bg", "busybox", "sleep", "60")
    assert result.code == 0 and ID_PATTERN.match(result.out.strip())
    assert container(services, "bg").status == "running"
    body = created_body(services)
    assert not (body["AttachStdin"] or body["AttachStdout"] or body["AttachStderr"])
    assert not [c for c in services.containers.calls if c[0] == "attach"]


def test_run_interactive_forwards_stdin_until_end_of_file(lamina, services) -> None:
    result = lamina("run", "-i", "busybox", "cat", stdin=b"line one\nline two\n")
    assert result.code == 0 and result.out == "line one\nline two\n"
    body = created_body(services)
    assert body["OpenStdin"] and body["AttachStdin"] and body["StdinOnce"]


@pytest.mark.parametrize("argv, code, message", [
    (["busybox", "nosuchcommand"], 127, "executable file not found"),
    (["busybox", "/etc"], 126, "permission denied"),
    (["nosuchimage"], 125, "Unable to find image 'nosuchimage:latest' locally"),
    (["-m", "12zz", "busybox"], 125, """invalid argument "12zz" for "-m, --memory" flag: invalid size: '12zz'"""),
    (["--cpus", "-1", "busybox"], 125, 'invalid argument "-1" for "--cpus" flag'),
    (["--cpus", "lots", "busybox"], 125, "failed to parse lots as a rational number"),
    (["--restart", "sometimes", "busybox"], 125, "unknown policy 'sometimes'"),
    (["--restart", "always:3", "busybox"], 125, "maximum retry count can only be used with 'on-failure'"),
    (["--rm", "--restart", "always", "busybox"], 125, "Conflicting options"),
    (["--pids-limit", "many", "busybox"], 125, '"--pids-limit" flag'),
    (["--bogus", "busybox"], 125, "unrecognized arguments: --bogus"),
    (["-m", "1m", "busybox"], 125, "Minimum memory limit allowed is 6MB"),
], ids=["command not found", "command cannot be invoked", "unknown image", "bad memory size",
        "negative cpus", "cpus not a number", "unknown restart policy", "retry count without on-failure",
        "rm with a restart policy", "pids limit not a number", "unknown flag", "engine refuses the value"])
def test_run_exit_codes_like_docker(lamina, argv, code, message) -> None:
    result = lamina("run", *argv)
    assert result.code == code, result.err
    assert message in result.err


def test_run_with_a_name_in_use_is_125_and_says_why(lamina) -> None:
    assert lamina("create", "--name", "dup", "busybox").code == 0
    result = lamina("run", "--name", "dup", "busybox")
    assert result.code == 125
    assert 'lamina: Error response from daemon: Conflict. The container name "/dup" is already in use' in result.err
    assert result.err.endswith("See 'lamina run --help'.\n")


def test_flags_after_the_image_belong_to_the_command(lamina, services) -> None:
    result = lamina("run", "--rm", "busybox", "ls", "-l", "--rm=false", "-h", "-it")
    assert result.code == 0
    body = created_body(services)
    assert body["Cmd"] == ["ls", "-l", "--rm=false", "-h", "-it"]
    assert body["HostConfig"]["AutoRemove"] is True and body["Tty"] is False


def test_create_builds_docker_s_request_body(lamina, services, tmp_path, monkeypatch) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# a comment\n\nFROM_FILE=1\n  SPACED=  kept  \nINHERITED\nUNSET_ONE\n")
    monkeypatch.setenv("INHERITED", "from the environment")
    monkeypatch.setenv("PASSED", "yes")
    monkeypatch.delenv("UNSET_ONE", raising=False)
    monkeypatch.delenv("UNSET_TWO", raising=False)
    result = lamina(
        "create", "--name", "full", "-e", "A=1", "-e", "PASSED", "-e", "UNSET_TWO", "--env-file", str(env_file),
        "-w", "/work", "-u", "1000:1000", "--entrypoint", "/bin/sh", "-h", "box", "--init", "--read-only",
        "--tmpfs", "/run:rw,size=64m", "--tmpfs", "/tmp", "-m", "512m", "--memory-swap", "-1", "--cpus", "1.5",
        "--cpu-shares", "512", "--cpuset-cpus", "0-1", "--pids-limit", "100", "--restart", "on-failure:3",
        "--stop-signal", "SIGUSR1", "--stop-timeout", "20", "-l", "a=b", "-l", "flag", "--network", "none",
        "--log-opt", "max-size=10m", "--log-opt", "max-file=3", "--runtime", "crun", "-p", "8080:80",
        "--ulimit", "nofile=1024:2048", "--shm-size", "128m", "-i", "-t",
        "busybox", "-c", "echo hi")
    assert result.code == 0, result.err
    assert ID_PATTERN.match(result.out.strip())
    body = created_body(services)
    assert body["Env"] == ["FROM_FILE=1", "SPACED=  kept  ", "INHERITED=from the environment", "A=1", "PASSED=yes"]
    assert body["Cmd"] == ["-c", "echo hi"] and body["Entrypoint"] == ["/bin/sh"]
    assert (body["WorkingDir"], body["User"], body["Hostname"], body["Image"]) == ("/work", "1000:1000", "box", "busybox")
    assert body["Labels"] == {"a": "b", "flag": ""}
    assert (body["StopSignal"], body["StopTimeout"]) == ("SIGUSR1", 20)
    assert body["Tty"] and body["OpenStdin"] and body["AttachStdin"] and body["AttachStdout"]
    assert body["ExposedPorts"] == {"80/tcp": {}}
    host = body["HostConfig"]
    assert host["Init"] is True and host["ReadonlyRootfs"] is True
    assert host["Tmpfs"] == {"/run": "rw,size=64m", "/tmp": ""}
    assert (host["Memory"], host["MemorySwap"], host["NanoCpus"]) == (512 << 20, -1, 1_500_000_000)
    assert (host["CpuShares"], host["CpusetCpus"], host["PidsLimit"]) == (512, "0-1", 100)
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert host["NetworkMode"] == "none" and host["Runtime"] == "crun"
    assert host["LogConfig"] == {"Type": "", "Config": {"max-size": "10m", "max-file": "3"}}
    assert host["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
    assert host["ShmSize"] == 128 << 20
    assert "SizeRw" not in body


def test_create_defaults_and_an_empty_entrypoint(lamina, services) -> None:
    assert lamina("create", "busybox").code == 0
    body = created_body(services)
    assert body["Cmd"] is None and body["Entrypoint"] is None and body["Env"] == []
    assert body["HostConfig"]["NetworkMode"] == "default"
    assert body["HostConfig"]["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert "Init" not in body["HostConfig"] and "PidsLimit" not in body["HostConfig"]
    assert lamina("create", "--entrypoint", "", "busybox").code == 0
    assert created_body(services)["Entrypoint"] == [""]


def test_env_file_errors(lamina, tmp_path) -> None:
    assert "open /nonexistent/env" in lamina("create", "--env-file", "/nonexistent/env", "busybox").err
    bad = tmp_path / "bad"
    bad.write_text("GOOD=1\nBAD KEY=2\n")
    result = lamina("create", "--env-file", str(bad), "busybox")
    assert result.code == 125 and "variable 'BAD KEY' contains whitespaces" in result.err


# -- start, attach, stop, kill, rm, wait ---------------------------------------------------------

def test_start_prints_names_and_start_attach_returns_the_exit_code(lamina, services) -> None:
    lamina("create", "--name", "one", "busybox", "sleep", "9")
    lamina("create", "--name", "two", "busybox", "sh", "-c", "echo attached; exit 4")
    result = lamina("start", "one", "ghost")
    assert result.out == "one\n" and "No such container: ghost" in result.err and result.code == 4
    result = lamina("start", "-a", "two")
    assert (result.code, result.out) == (4, "attached\n")
    assert lamina("start", "-a", "ghost").code == 125
    assert lamina("start", "-a", "one", "two").code == 2


def test_attach_to_a_running_container(lamina, services) -> None:
    lamina("run", "-d", "-i", "--name", "cat", "busybox", "cat")
    result = lamina("attach", "cat", stdin=b"to the running one\n")
    assert (result.code, result.out) == (0, "to the running one\n")
    assert lamina("attach", "cat").err == "You cannot attach to a stopped container, start it first\n"


def test_stop_kill_restart_rm_wait(lamina, services) -> None:
    lamina("run", "-d", "--name", "web", "busybox", "sleep", "60")
    lamina("run", "-d", "--name", "db", "busybox", "sleep", "60")
    result = lamina("stop", "-t", "1", "-s", "SIGINT", "web", "ghost")
    assert result.out == "web\n" and result.code == 4
    assert [c for c in services.containers.calls if c[0] == "stop"][-1][1]["timeout"] == 1
    assert lamina("stop", "web").out == "web\n"          # already stopped: still fine, like docker
    assert lamina("wait", "web").out == "143\n"
    result = lamina("kill", "-s", "SIGHUP", "db")
    assert result.out == "db\n" and [c for c in services.containers.calls if c[0] == "kill"][-1][1]["signal"] == "SIGHUP"
    result = lamina("kill", "db")
    assert result.code == 5 and "is not running" in result.err
    assert lamina("restart", "db").out == "db\n"
    result = lamina("rm", "db")
    assert result.code == 5 and "container is running" in result.err
    assert lamina("rm", "-f", "-v", "db", "web").out == "db\nweb\n"
    assert services.containers.containers == {}


def test_pause_unpause_rename_update(lamina, services) -> None:
    lamina("run", "-d", "--name", "web", "busybox", "sleep", "60")
    assert lamina("pause", "web").out == "web\n" and container(services, "web").status == "paused"
    assert lamina("unpause", "web").out == "web\n" and container(services, "web").status == "running"
    assert lamina("rename", "web", "api").code == 0 and container(services, "api")
    assert lamina("update", "api").code == 2
    result = lamina("update", "-m", "256m", "--cpus", "0.5", "--pids-limit", "-1", "--restart", "always", "api")
    assert result.out == "api\n"
    update = [c for c in services.containers.calls if c[0] == "update"][-1][1]["body"]
    assert update == {"Memory": 256 << 20, "NanoCpus": 500_000_000, "PidsLimit": -1,
                      "RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}}


# -- ps -----------------------------------------------------------------------------------------

def test_ps_table_like_docker(lamina, services) -> None:
    lamina("run", "-d", "--name", "web", "busybox", "sleep", "600000000000000000000")
    lamina("create", "--name", "idle", "busybox")
    container(services, "web").created -= 10      # ps lists the newest first
    result = lamina("ps")
    lines = result.out.splitlines()
    assert re.split(r"\s{3,}", lines[0]) == ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert len(lines) == 2 and lines[1].endswith("web")
    assert '"sleep 6000000000000…"' in lines[1] and lines[1].startswith(container(services, "web").id[:12] + "   ")
    everything = lamina("ps", "-a", "--no-trunc").out
    assert "idle" in everything and container(services, "idle").id in everything
    assert lamina("ps", "-aq").out.split() == [container(services, "idle").id[:12], container(services, "web").id[:12]]


def test_ps_options_reach_the_api(lamina, services) -> None:
    lamina("create", "--name", "one", "busybox")
    lamina("ps", "-n", "3", "--filter", "status=exited", "--filter", "label=a=b", "-s")
    call = [c for c in services.containers.calls if c[0] == "list"][-1][1]
    assert call == {"all": False, "limit": 3, "size": True, "filters": {"status": ["exited"], "label": ["a=b"]}}
    lamina("ps", "-l")
    assert [c for c in services.containers.calls if c[0] == "list"][-1][1]["limit"] == 1
    result = lamina("ps", "-a", "-s")
    assert result.out.splitlines()[0].endswith("SIZE") and "12B (virtual 4.26MB)" in result.out


def test_ps_formats(lamina, services) -> None:
    lamina("create", "--name", "one", "-l", "b=2", "-l", "a=1", "busybox", "echo", "hi")
    assert lamina("ps", "-a", "--format", "{{.Names}}|{{.State}}|{{.Command}}|{{.Labels}}").out == \
        'one|created|"echo hi"|a=1,b=2\n'
    row = json.loads(lamina("ps", "-a", "--format", "json").out)
    assert row["Names"] == "one" and row["Image"] == "busybox" and row["Status"] == "Created"
    table = lamina("ps", "-a", "--format", "table {{.ID}}\t{{.Names}}").out.splitlines()
    assert table[0].startswith("CONTAINER ID") and table[0].endswith("NAMES")
    assert lamina("ps", "-a", "--format", "{{.Nope}}").code == 2


# -- logs ---------------------------------------------------------------------------------------

def test_logs_split_streams_and_pass_options(lamina, services) -> None:
    lamina("run", "--name", "talker", "busybox", "sh", "-c", "echo out; echo err >&2")
    result = lamina("logs", "talker")
    assert (result.out, result.err) == ("out\n", "err\n")
    before = time.time()
    lamina("logs", "-n", "1", "--since", "10m", "--until", "2023-11-14T22:13:20Z", "-t", "talker")
    call = [c for c in services.containers.calls if c[0] == "logs"][-1][1]
    assert call["tail"] == "1" and call["timestamps"] is True
    assert before - 601 < call["since"] < before - 599
    assert call["until"] == 1_700_000_000
    assert lamina("logs", "--since", "last week", "talker").code == 2
    assert lamina("logs", "-n", "x", "talker").code == 2
    assert lamina("logs", "ghost").code == 4


def test_logs_follow_ends_with_the_container(lamina, services) -> None:
    lamina("run", "-d", "-i", "--name", "cat", "busybox", "cat")
    services.containers._emit(container(services, "cat"), 1, b"early\n")
    import threading

    def finish_later() -> None:
        time.sleep(0.2)
        services.containers._emit(container(services, "cat"), 1, b"late\n")
        services.containers._finish(container(services, "cat"), 0)

    threading.Thread(target=finish_later).start()
    result = lamina("logs", "-f", "cat")
    assert result.out == "early\nlate\n"


# -- exec ---------------------------------------------------------------------------------------

def test_exec_exit_code_stdin_env_and_detach(lamina, services) -> None:
    lamina("run", "-d", "--name", "box", "busybox", "sleep", "60")
    result = lamina("exec", "box", "sh", "-c", "echo hi; echo oops >&2; exit 4")
    assert (result.code, result.out, result.err) == (4, "hi\n", "oops\n")
    assert lamina("exec", "-i", "box", "cat", stdin=b"exec in\n").out == "exec in\n"
    result = lamina("exec", "-e", "A=1", "-w", "/tmp", "-u", "nobody", "box", "env")
    assert result.out == "A=1\n"
    body = [c for c in services.execs.calls if c[0] == "create"][-1][1]["body"]
    assert (body["WorkingDir"], body["User"], body["AttachStdin"], body["Tty"]) == ("/tmp", "nobody", False, False)
    assert lamina("exec", "-d", "box", "true").out == ""
    assert [c for c in services.execs.calls if c[0] == "start"][-1][1]["detach"] is True
    result = lamina("exec", "box", "nosuchthing")
    assert result.code == 127 and "executable file not found" in result.out
    assert lamina("exec", "box").code == 2


def test_exec_in_a_stopped_container_is_125(lamina) -> None:
    lamina("create", "--name", "idle", "busybox")
    result = lamina("exec", "idle", "true")
    assert result.code == 125 and "is not running" in result.err
    assert lamina("exec", "ghost", "true").code == 125


# -- inspect, top, stats, diff, commit, export, prune, boot -------------------------------------

def test_inspect_containers_then_images(lamina, services) -> None:
    lamina("create", "--name", "web", "busybox")
    both = json.loads(lamina("inspect", "web", "busybox").out)
    assert both[0]["Name"] == "/web" and both[1]["Id"].startswith("sha256:")
    assert lamina("inspect", "-f", "{{.State.Status}}", "web").out == "created\n"
    assert lamina("inspect", "-s", "-f", "{{.SizeRw}}", "web").out == "12\n"
    assert lamina("inspect", "--type", "image", "-f", "{{.Id}}", "web").err == "Error: No such image: web\n"
    assert lamina("container", "inspect", "busybox").err == "Error: No such container: busybox\n"
    assert json.loads(lamina("container", "inspect", "web").out)[0]["Name"] == "/web"


def test_top_stats_diff(lamina, services) -> None:
    lamina("run", "-d", "--name", "box", "busybox", "sleep", "60")
    top = lamina("top", "box", "aux").out.splitlines()
    assert top[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert top[0].startswith("UID" + " " * 17) and top[1].endswith("sleep 60")
    assert [c for c in services.containers.calls if c[0] == "top"][-1][1]["ps_args"] == "aux"
    stats = lamina("stats", "--no-stream", "box").out.splitlines()
    assert re.split(r"\s{3,}", stats[0]) == ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %",
                                             "NET I/O", "BLOCK I/O", "PIDS"]
    assert re.split(r"\s{3,}", stats[1]) == [container(services, "box").id[:12], "box", "10.00%",
                                             "8MiB / 512MiB", "1.56%", "1.5kB / 648B", "4.1MB / 1.02MB", "3"]
    assert [c for c in services.containers.calls if c[0] == "stats"][-1][1]["stream"] is False
    assert lamina("stats", "--no-stream", "--format", "{{.Name}}: {{.CPUPerc}}").out == "box: 10.00%\n"
    assert lamina("stats", "--no-stream").out.count("\n") == 2      # the running containers
    streamed = lamina("stats", "box").out
    assert "10.00%" in streamed
    assert lamina("diff", "box").out == "C /etc\nD /etc/motd\nA /tmp/new\n"


def test_stats_cgroup_v1_cache_and_no_precpu() -> None:
    from lamina.cli.commands.stats import stats_row

    document = dict(STATS, precpu_stats={}, memory_stats={"usage": 100, "limit": 0,
                                                          "stats": {"total_inactive_file": 40}})
    row = stats_row("x", dict(document, name="/x", id="f" * 64))
    assert row["MemUsage"] == "60B / 0B" and row["MemPerc"] == "0.00%"
    assert row["CPUPerc"] == "3.00%"   # precpu missing: the delta is from zero


def test_commit_export_prune_boot(lamina, services, tmp_path) -> None:
    lamina("run", "-d", "--name", "box", "busybox", "sleep", "60")
    result = lamina("commit", "-a", "me", "-m", "snapshot", "-c", "ENV A=1", "-c", "CMD sh", "--pause=false",
                    "box", "snap:v1")
    assert result.out == "sha256:" + "e" * 64 + "\n"
    call = [c for c in services.containers.calls if c[0] == "commit"][-1][1]
    assert (call["repository"], call["tag"], call["author"], call["comment"], call["pause"], call["changes"]) == (
        "snap", "v1", "me", "snapshot", False, ["ENV A=1", "CMD sh"])
    assert lamina("export", "box", stdout_terminal=True).code == 2
    exported = lamina("export", "box")
    names = [entry.name for entry in TarReader(io.BytesIO(exported.out_bytes))]
    assert "etc/hostname" in names
    target = tmp_path / "box.tar"
    assert lamina("export", "-o", str(target), "box").code == 0 and target.read_bytes() == exported.out_bytes
    lamina("stop", "box")
    result = lamina("container", "prune", stdin=b"no\n")
    assert result.code == 1 and "WARNING! This will remove all stopped containers." in result.out
    result = lamina("container", "prune", "-f")
    assert result.out.startswith("Deleted Containers:\n" + container_id_line(result.out))
    assert result.out.endswith("Total reclaimed space: 1kB\n")
    services.containers.boot_result = {"Exited": ["abc", "def"], "Restarted": ["abc"],
                                       "Failed": [{"Id": "def", "Error": "no such image"}]}
    result = lamina("system", "boot")
    assert (result.code, result.out, result.err) == (1, "abc\n", "Error: failed to restart def: no such image\n")
    services.containers.boot_result = {"Exited": [], "Restarted": ["abc"], "Failed": []}
    assert lamina("system", "boot", "-q").out == "" and lamina("system", "boot").code == 0


def container_id_line(text: str) -> str:
    return text.splitlines()[1] + "\n"


# -- cp -----------------------------------------------------------------------------------------

def _container_root(services, name: str) -> str:
    return container(services, name).root


@pytest.fixture
def box(lamina, services) -> str:
    lamina("create", "--name", "box", "busybox")
    root = _container_root(services, "box")
    os.makedirs(os.path.join(root, "data", "sub"))
    with open(os.path.join(root, "data", "file.txt"), "w") as file:
        file.write("content\n")
    with open(os.path.join(root, "data", "sub", "deep.txt"), "w") as file:
        file.write("deep\n")
    os.symlink("file.txt", os.path.join(root, "data", "link"))
    return root


def test_cp_from_container_follows_docker_s_rules(lamina, box, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert lamina("cp", "box:/data/file.txt", str(out)).code == 0
    assert (out / "file.txt").read_text() == "content\n"
    assert lamina("cp", "box:/data/file.txt", str(out / "renamed.txt")).code == 0
    assert (out / "renamed.txt").read_text() == "content\n"
    (out / "renamed.txt").write_text("old")
    assert lamina("cp", "box:data/file.txt", str(out / "renamed.txt")).code == 0      # relative: from /
    assert (out / "renamed.txt").read_text() == "content\n"
    assert lamina("cp", "box:/data", str(out)).code == 0
    assert (out / "data" / "sub" / "deep.txt").read_text() == "deep\n"
    assert os.readlink(out / "data" / "link") == "file.txt"
    assert lamina("cp", "box:/data", str(out / "copy")).code == 0
    assert (out / "copy" / "sub" / "deep.txt").read_text() == "deep\n"
    (out / "content").mkdir()
    assert lamina("cp", "box:/data/.", str(out / "content")).code == 0
    assert (out / "content" / "file.txt").exists() and not (out / "content" / "data").exists()
    assert lamina("cp", "box:/data/.", str(out / "fresh")).code == 0
    assert (out / "fresh" / "sub" / "deep.txt").exists()
    result = lamina("cp", "box:/data", str(out / "file.txt"))
    assert result.code == 1 and "cannot copy directory" in result.err
    result = lamina("cp", "box:/data/file.txt", str(out / "nodir") + "/")
    assert result.code == 4 and "does not exist" in result.err
    assert lamina("cp", "box:/data/file.txt", str(tmp_path / "missing" / "x")).code == 4
    result = lamina("cp", "box:/nosuch", str(out))
    assert result.code == 4 and "Could not find the file /nosuch" in result.err


def test_cp_to_and_from_stdout_and_stdin(lamina, box, services) -> None:
    result = lamina("cp", "box:/data/file.txt", "-")
    entries = [(entry.name, entry.size) for entry in TarReader(io.BytesIO(result.out_bytes))]
    assert entries == [("file.txt", 8)]
    assert lamina("cp", "box:/data/file.txt", "-", stdout_terminal=True).code == 2
    parts: list[bytes] = []
    writer = TarWriter(lambda data: parts.append(bytes(data)))
    writer.add_file("from-stdin.txt", 4, io.BytesIO(b"tar\n"))
    writer.close()
    assert lamina("cp", "-", "box:/data", stdin=b"".join(parts)).code == 0
    assert pathlib.Path(box, "data", "from-stdin.txt").read_text() == "tar\n"
    result = lamina("cp", "-", "box:/data/file.txt", stdin=b"".join(parts))
    assert result.code == 1 and "must be a directory" in result.err


def test_cp_into_the_container(lamina, box, services, tmp_path) -> None:
    source = tmp_path / "src"
    (source / "inner").mkdir(parents=True)
    (source / "a.txt").write_text("a\n")
    (source / "inner" / "b.txt").write_text("b\n")
    os.link(source / "a.txt", source / "hard.txt")
    os.symlink("a.txt", source / "sym")
    assert lamina("cp", str(source / "a.txt"), "box:/data").code == 0
    assert pathlib.Path(box, "data", "a.txt").read_text() == "a\n"
    assert lamina("cp", str(source / "a.txt"), "box:/data/new-name.txt").code == 0
    assert pathlib.Path(box, "data", "new-name.txt").read_text() == "a\n"
    assert lamina("cp", str(source), "box:/data").code == 0
    assert pathlib.Path(box, "data", "src", "inner", "b.txt").read_text() == "b\n"
    assert os.readlink(os.path.join(box, "data", "src", "sym")) == "a.txt"
    assert os.stat(os.path.join(box, "data", "src", "hard.txt")).st_ino == os.stat(
        os.path.join(box, "data", "src", "a.txt")).st_ino
    assert lamina("cp", str(source) + "/.", "box:/data/sub").code == 0
    assert os.path.exists(os.path.join(box, "data", "sub", "inner", "b.txt"))
    assert lamina("cp", "-a", str(source), "box:/renamed").code == 0
    assert os.path.exists(os.path.join(box, "renamed", "a.txt"))
    put = [c for c in services.containers.calls if c[0] == "archive_put"][-1][1]
    assert put["copy_uid_gid"] is True and put["no_overwrite_dir_non_dir"] is True and put["path"] == "/"
    result = lamina("cp", str(source), "box:/data/file.txt")
    assert result.code == 1 and "cannot copy directory" in result.err
    assert lamina("cp", str(tmp_path / "nothing"), "box:/data").code == 4
    assert lamina("cp", str(source / "a.txt"), "box:/data/nodir/").code == 4


def test_cp_argument_forms(lamina, box) -> None:
    from lamina.cli.commands.cp import split_argument

    assert split_argument("box:/x") == ("box", "/x")
    assert split_argument("/abs/with:colon") == ("", "/abs/with:colon")
    assert split_argument("./rel:colon") == ("", "./rel:colon")
    assert split_argument("plain") == ("", "plain")
    assert lamina("cp", "a:/x", "b:/y").code == 2
    assert lamina("cp", "/x", "/y").code == 2


def test_cp_from_a_container_never_writes_outside_the_destination(lamina, services, tmp_path) -> None:
    """A hostile archive (a symlink to the outside, then a file through it) and a symlink already
    in the destination: nothing lands outside the destination directory."""
    lamina("create", "--name", "evil", "busybox")
    outside = tmp_path / "outside"
    outside.mkdir()
    destination = tmp_path / "destination"
    destination.mkdir()
    os.symlink(str(outside), destination / "planted")
    parts: list[bytes] = []
    writer = TarWriter(lambda data: parts.append(bytes(data)))
    writer.add(TarEntry(name="evil", type=EntryType.DIRECTORY, mode=0o755))
    writer.add(TarEntry(name="evil/escape", type=EntryType.SYMLINK, linkname=str(outside)))
    writer.add_file("evil/escape/pwned", 5, io.BytesIO(b"pwned"))
    writer.add_file("evil/../../pwned-too", 5, io.BytesIO(b"pwned"))
    writer.close()
    stat = {"name": "evil", "size": 0, "mode": (1 << 31) | 0o755, "mtime": "2023-11-14T22:13:20Z", "linkTarget": ""}
    services.containers.archive_get = lambda id, path: (stat, iter([b"".join(parts)]))
    lamina("cp", "evil:/evil", str(destination))
    parts2: list[bytes] = []
    writer = TarWriter(lambda data: parts2.append(bytes(data)))
    writer.add_file("planted/through-existing", 5, io.BytesIO(b"pwned"))
    writer.close()
    services.containers.archive_get = lambda id, path: (dict(stat, name="planted"), iter([b"".join(parts2)]))
    lamina("cp", "evil:/planted", str(destination))
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "pwned-too").exists()


def test_cp_skips_whiteouts_instead_of_applying_them(lamina, services, tmp_path) -> None:
    lamina("create", "--name", "wh", "busybox")
    destination = tmp_path / "destination"
    (destination / "dir").mkdir(parents=True)
    (destination / "dir" / "precious").write_text("keep")
    parts: list[bytes] = []
    writer = TarWriter(lambda data: parts.append(bytes(data)))
    writer.add(TarEntry(name="dir", type=EntryType.DIRECTORY, mode=0o755))
    writer.add_file("dir/.wh.precious", 0, io.BytesIO(b""))
    writer.close()
    stat = {"name": "dir", "size": 0, "mode": (1 << 31) | 0o755, "mtime": "", "linkTarget": ""}
    services.containers.archive_get = lambda id, path: (stat, iter([b"".join(parts)]))
    result = lamina("cp", "wh:/dir", str(destination))
    assert (destination / "dir" / "precious").read_text() == "keep"
    assert "skipped dir/.wh.precious" in result.err
