"""docker-py against ``lamina serve``: ``network_mode``, ``pid_mode`` and ``ipc_mode``
``container:NAME`` (docker-py's own integration tests' shapes), and ``stats`` network counters."""

from __future__ import annotations

import pytest

from server.conftest import BUSYBOX_ARCHIVE

docker = pytest.importorskip("docker")

pytestmark = [pytest.mark.privileged, pytest.mark.interop]


@pytest.fixture
def client(server):
    client = docker.DockerClient(base_url=server.host, version="auto", timeout=60)
    with open(BUSYBOX_ARCHIVE, "rb") as archive:
        client.images.load(archive.read())
    yield client
    for container in client.containers.list(all=True):
        container.remove(force=True)
    client.close()


def test_docker_py_shares_the_namespaces_of_a_running_container(client) -> None:
    web = client.containers.run("busybox", ["sh", "-c", "echo hi > /dev/shm/note; exec sleep 300"], name="web",
                                detach=True, ipc_mode="shareable", hostname="webhost")
    output = client.containers.run("busybox", ["sh", "-c", "hostname; cat /dev/shm/note; cat /proc/1/cmdline"],
                                   network_mode="container:web", pid_mode="container:web",
                                   ipc_mode=f"container:{web.id}", remove=True)
    assert output == b"webhost\nhi\nsleep\x00300\x00"
    joiner = client.containers.create("busybox", "true", network_mode="container:web")
    assert joiner.attrs["HostConfig"]["NetworkMode"] == f"container:{web.id}"
    assert joiner.attrs["NetworkSettings"]["Networks"] == {}
    with pytest.raises(docker.errors.APIError) as refused:
        client.containers.create("busybox", "true", network_mode="container:web", ports={"80/tcp": 8080})
    assert refused.value.status_code == 400 and "port publishing" in str(refused.value)
    stats = web.stats(stream=False)
    assert set(stats["networks"]["eth0"]) >= {"rx_bytes", "rx_packets", "tx_bytes", "tx_packets"}
    web.stop(timeout=0)
    with pytest.raises(docker.errors.APIError) as stopped:
        joiner.start()
    assert stopped.value.status_code == 409
    assert "cannot join network of a non running container" in str(stopped.value)
