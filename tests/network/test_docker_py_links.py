"""docker-py through ``lamina serve``: ``links=`` with a user-defined network (sent as
``HostConfig.Links``) and ``EndpointConfig(links=...)``, both aliases for the linking container
only; links on the default bridge in ``EndpointsConfig`` are refused with a 400."""

from __future__ import annotations

import pytest

from server.conftest import BUSYBOX_ARCHIVE, server, socket_dir, start_server  # noqa: F401

docker = pytest.importorskip("docker")

pytestmark = [pytest.mark.privileged, pytest.mark.interop]


def test_docker_py_links_on_a_user_network(server, names) -> None:  # noqa: F811
    client = docker.DockerClient(base_url=server.host, version="auto", timeout=60)
    created: list[str] = []
    try:
        with open(BUSYBOX_ARCHIVE, "rb") as archive:
            client.images.load(archive.read())
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=names.subnet())])
        client.networks.create("pynet", ipam=ipam, options={"com.docker.network.bridge.name": names.bridge()})
        web = client.containers.run("busybox", ["sleep", "60"], name="pyweb", network="pynet", detach=True)
        created.append(web.id)
        web.reload()
        address = web.attrs["NetworkSettings"]["Networks"]["pynet"]["IPAddress"]
        linker = client.containers.run("busybox", ["sh", "-c", "ping -c1 -W3 webalias >/dev/null && cat /etc/hosts"],
                                       network="pynet", links={"pyweb": "webalias"}, detach=True)
        created.append(linker.id)
        assert linker.wait(timeout=30)["StatusCode"] == 0
        assert f"{address}\twebalias pyweb" in linker.logs().decode().splitlines()
        assert linker.attrs["HostConfig"]["Links"] is None
        assert client.api.inspect_container(linker.id)["NetworkSettings"]["Networks"]["pynet"]["Links"] == [
            "pyweb:webalias"]
        api = client.api
        endpoint = api.create_container(
            "busybox", ["cat", "/etc/hosts"], host_config=api.create_host_config(network_mode="pynet"),
            networking_config=api.create_networking_config({"pynet": api.create_endpoint_config(
                links={"pyweb": "endpoint-alias"})}))
        created.append(endpoint["Id"])
        api.start(endpoint["Id"])
        assert api.wait(endpoint["Id"], timeout=30)["StatusCode"] == 0
        assert f"{address}\tendpoint-alias pyweb" in api.logs(endpoint["Id"]).decode().splitlines()
        with pytest.raises(docker.errors.APIError) as refused:
            api.create_container("busybox", ["true"], networking_config=api.create_networking_config(
                {"bridge": api.create_endpoint_config(links={"pyweb": "x"})}))
        assert refused.value.status_code == 400
        assert "links are only supported for user-defined networks" in str(refused.value)
    finally:
        for container_id in created:
            try:
                client.api.remove_container(container_id, force=True)
            except docker.errors.APIError:
                pass
        try:
            client.networks.get("pynet").remove()
        except docker.errors.APIError:
            pass
        client.close()
