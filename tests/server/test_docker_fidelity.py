"""Smaller Docker behaviours that docker-py's own integration suite checks, through docker-py
and the real docker CLI against ``lamina serve``: commit of a container that exits while being
paused, build output and options, in-band load errors, Docker's error messages, the ``runc``
runtime name, volume subpaths and ``cp`` of the files lamina mounts into a container."""

from __future__ import annotations

import pytest

from server.conftest import BUSYBOX_ARCHIVE

docker = pytest.importorskip("docker")

pytestmark = [pytest.mark.privileged, pytest.mark.interop]


@pytest.fixture
def api(server):
    client = docker.APIClient(base_url=server.host, version="auto", timeout=60)
    with open(BUSYBOX_ARCHIVE, "rb") as archive:
        list(client.load_image(archive.read()))
    yield client
    client.close()


def test_commit_of_a_container_that_exits_at_once_commits_it_as_exited(api) -> None:
    # docker-py's CommitTest: the container's "touch" ends while commit pauses it
    for _ in range(5):
        container = api.create_container("busybox", ["touch", "/test"])
        api.start(container)
        image = api.commit(container["Id"])
        assert api.inspect_image(image["Id"])["Container"] == container["Id"]
        check = api.create_container(image["Id"], ["ls", "/test"])
        api.start(check)
        assert api.wait(check)["StatusCode"] == 0
