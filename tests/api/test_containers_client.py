"""APIClient's container and exec calls over both transports: in-process (the service's duplex
handed over as it is) and a unix socket served by lamina's HTTP server in a thread (the
connection upgraded and returned as the duplex).  Same assertions for both."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator

import pytest

from lamina import errdefs
from lamina.api.router import Router
from lamina.client.client import APIClient, ClientError
from lamina.client.stdio import decode_frames
from lamina.client.transport import InProcessTransport, UnixSocketTransport
from lamina.config import EngineConfig
from lamina.stdcopy import FrameDecoder

from .container_service_double import ContainerDoubleServices


@pytest.fixture
def services(tmp_path) -> ContainerDoubleServices:
    return ContainerDoubleServices(str(tmp_path / "containers"))


@pytest.fixture
def unix_client(services) -> Iterator[APIClient]:
    from lamina.server.server import Server, ServerConfig

    directory = tempfile.mkdtemp(prefix="lamina-c-", dir="/tmp")
    path = os.path.join(directory, "api.sock")
    server = Server(Router(lambda: services), ServerConfig(hosts=(f"unix://{path}",), socket_group=None,
                                                           shutdown_timeout=1.0, hijack_linger=0.5))
    server.listen()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield APIClient(UnixSocketTransport(path, timeout=10))
    finally:
        server.shutdown("test over")
        thread.join(10)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def in_process_client(services, tmp_path) -> APIClient:
    config = EngineConfig(data_root=str(tmp_path / "data"), exec_root=str(tmp_path / "exec"))
    return APIClient(InProcessTransport(config, lambda: services))


@pytest.fixture(params=["in-process", "unix socket"])
def client(request) -> APIClient:
    return request.getfixturevalue("unix_client" if request.param == "unix socket" else "in_process_client")


def create(client: APIClient, name: str, **config) -> str:
    config.setdefault("Image", "busybox")
    return client.create_container(config, name=name)["Id"]


def test_run_like_docker_attach_wait_start(client, services) -> None:
    id = create(client, "cat", Cmd=["cat"], OpenStdin=True, AttachStdin=True)
    attachment = client.attach(id, stdin=True, stdout=True, stderr=True)
    pending = client.wait_later(id, condition="next-exit")
    assert client.start(id) is True
    attachment.send(b"through the socket\n")
    attachment.close_stdin()
    assert list(attachment.output()) == [(1, b"through the socket\n")]
    attachment.close()
    assert pending.result() == {"StatusCode": 0, "Error": None}
    assert client.start(id) is True  # exited: it starts again (the double's cat ends at once)


def test_start_and_stop_report_304_as_false(client) -> None:
    id = create(client, "sleeper", Cmd=["sleep", "9"])
    assert client.start(id) is True
    assert client.start("sleeper") is False
    assert client.stop("sleeper", timeout=1) is True
    assert client.stop("sleeper") is False


def test_errors_carry_status_and_message(client) -> None:
    with pytest.raises(ClientError) as caught:
        client.inspect_container("nosuch")
    assert caught.value.status == 404 and caught.value.message == "No such container: nosuch"
    with pytest.raises(ClientError) as caught:
        client.create_container({"Image": "busybox", "Tty": "yes"})
    assert caught.value.status == 400 and "Tty must be a boolean" in caught.value.message
    with pytest.raises(ClientError) as caught:
        client.attach("nosuch", stdout=True)
    assert caught.value.status == 404


def test_logs_are_demultiplexed_and_raw_for_a_tty(client) -> None:
    create(client, "talker", Cmd=["sh", "-c", "echo out; echo err >&2"])
    client.start("talker")
    assert list(client.logs("talker")) == [(1, b"out\n"), (2, b"err\n")]
    assert list(client.logs("talker", stdout=False)) == [(2, b"err\n")]
    create(client, "tty", Cmd=["echo", "raw"], Tty=True)
    client.start("tty")
    assert list(client.logs("tty")) == [(1, b"raw\n")]


def test_exec_round_trip(client, services) -> None:
    create(client, "box", Cmd=["sleep", "9"])
    client.start("box")
    exec_id = client.exec_create("box", {"Cmd": ["cat"], "AttachStdin": True, "AttachStdout": True})["Id"]
    attachment = client.exec_start(exec_id)
    assert attachment is not None and attachment.multiplexed
    attachment.send(b"exec stdin\n")
    attachment.close_stdin()
    assert b"".join(payload for _, payload in attachment.output()) == b"exec stdin\n"
    attachment.close()
    assert client.exec_inspect(exec_id)["ExitCode"] == 0
    detached = client.exec_create("box", {"Cmd": ["true"]})["Id"]
    assert client.exec_start(detached, detach=True) is None
    tty = client.exec_create("box", {"Cmd": ["echo", "t"], "Tty": True})["Id"]
    attachment = client.exec_start(tty, tty=True, console_size=(24, 80))
    assert attachment is not None and not attachment.multiplexed
    assert list(attachment.output()) == [(1, b"echo t\n")]
    attachment.close()
    client.exec_resize(tty, height=30, width=90)
    assert services.execs.execs[tty].resized == [(24, 80), (30, 90)]


def test_archive_stat_get_put_and_export(client, services) -> None:
    from lamina.archive import TarWriter

    create(client, "box")
    stat = client.archive_stat("box", "/etc/hostname")
    assert stat["name"] == "hostname" and stat["size"] == 13
    info, chunks = client.get_archive("box", "/etc")
    assert info["mode"] & (1 << 31) and b"etc/hostname" in b"".join(chunks)
    parts: list[bytes] = []
    writer = TarWriter(lambda data: parts.append(bytes(data)))
    writer.add_file("x.txt", 3, io.BytesIO(b"abc"))
    writer.close()
    client.put_archive("box", "/etc", io.BytesIO(b"".join(parts)), copy_uid_gid=True)
    assert client.archive_stat("box", "/etc/x.txt")["size"] == 3
    assert b"etc/x.txt" in b"".join(client.export("box"))


def test_the_other_calls(client, services) -> None:
    create(client, "box", Cmd=["sleep", "9"])
    client.start("box")
    assert client.top("box", ps_args="aux")["Processes"][0][-1] == "sleep 9"
    assert next(client.stats("box", stream=False))["name"] == "/box"
    assert len(list(client.stats("box"))) == 3
    assert client.changes("box")[0] == {"Path": "/etc", "Kind": 0}
    client.pause("box")
    client.unpause("box")
    client.rename("box", "crate")
    assert client.update("crate", {"Memory": 64 << 20}) == {"Warnings": []}
    client.resize("crate", height=10, width=20)
    assert [c["Names"] for c in client.containers(all=True, size=True)] == [["/crate"]]
    assert client.inspect_container("crate", size=True)["SizeRw"] == 12
    client.kill("crate", signal="SIGTERM")
    assert client.wait("crate") == {"StatusCode": 143, "Error": None}
    assert client.commit("crate", repository="snap", tag="1", changes=["ENV A=1"], config={"Cmd": ["sh"]})[
        "Id"].startswith("sha256:")
    client.restart("crate")
    client.remove_container("crate", force=True)
    assert client.prune_containers() == {"ContainersDeleted": None, "SpaceReclaimed": 0}
    assert client.system_boot() == {"Exited": [], "Restarted": [], "Failed": []}


def test_frame_decoder_handles_frames_split_anywhere() -> None:
    stream = b"".join(bytes([kind, 0, 0, 0]) + len(data).to_bytes(4, "big") + data
                      for kind, data in [(1, b"hello"), (2, b""), (2, b"world!"), (3, b"boom")])
    for size in (1, 3, 8, 9, 100):
        decoder = FrameDecoder()
        got: list[tuple[int, bytes]] = []
        for start in range(0, len(stream), size):
            got.extend(decoder.feed(stream[start:start + size]))
        merged: dict[int, bytes] = {}
        for kind, data in got:
            merged[kind] = merged.get(kind, b"") + data
        assert merged == {1: b"hello", 2: b"world!", 3: b"boom"}, size
        assert not decoder.incomplete
    with pytest.raises(errdefs.InvalidArgument):
        list(FrameDecoder().feed(b"\x07\x00\x00\x00\x00\x00\x00\x01x"))
    assert list(decode_frames([b"a", b"b"], multiplexed=False)) == [(1, b"a"), (1, b"b")]
