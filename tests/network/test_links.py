"""Legacy links (``--link``) on the default bridge, end to end through the container service:
``/etc/hosts`` entries, the ``<ALIAS>_...`` variables, Docker's refusals; plus the variables
of :mod:`lamina.container.links` for port ranges.  Links on user-defined networks (aliases for
the linking container only) through the service, the CLI and docker-py."""

from __future__ import annotations

import pytest

from lamina import errdefs
from lamina.container import links
from services.conftest import engine  # noqa: F401 - re-exported fixture

from .test_containers_on_networks import net  # noqa: F401 - re-exported fixture


@pytest.mark.privileged
def test_a_linked_container_reaches_its_target_by_alias_and_gets_the_legacy_variables(net) -> None:  # noqa: F811
    engine, _ = net
    web = engine.run("httpd", "-f", "-p", "80", "-h", "/etc", name="web-server", Env=["SECRET=s3", "MODE=prod"],
                     ExposedPorts={"80/tcp": {}, "53/udp": {}})
    address = engine.container_views.inspect(web)["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    client = engine.create("sh", "-c", "ping -c1 -W3 my-web >/dev/null && wget -qO- http://my-web/hostname && "
                           "env | sort && cat /etc/hosts", name="client",
                           Env=["MY_WEB_ENV_SECRET=overridden"], HostConfig={"Links": ["web-server:my-web"]})
    inspected = engine.container_views.inspect(client)
    assert inspected["HostConfig"]["Links"] == ["/web-server:/client/my-web"]
    # as in Docker, the link's name is one of the target's names in the list
    [listed] = [item for item in engine.container_views.list_containers(all=True) if item["Id"] == web]
    assert listed["Names"] == ["/web-server", "/client/my-web"]
    engine.containers.start(client)
    assert engine.wait(client) == 0, engine.output(client)
    output = engine.output(client)
    lines = output.splitlines()
    assert web[:12] in lines  # httpd served the target's /etc/hostname
    for variable in ("MY_WEB_NAME=/client/my-web", f"MY_WEB_PORT=udp://{address}:53",
                     f"MY_WEB_PORT_80_TCP=tcp://{address}:80", f"MY_WEB_PORT_80_TCP_ADDR={address}",
                     "MY_WEB_PORT_80_TCP_PORT=80", "MY_WEB_PORT_80_TCP_PROTO=tcp",
                     f"MY_WEB_PORT_53_UDP=udp://{address}:53", "MY_WEB_ENV_SECRET=overridden", "MY_WEB_ENV_MODE=prod"):
        assert variable in lines, output
    assert not any(line.startswith("MY_WEB_ENV_PATH=") for line in lines)
    assert f"{address}\tmy-web {web[:12]} web-server" in lines
    # a stopped target: the start fails with Docker's message
    engine.containers.stop(web, timeout=1)
    with pytest.raises(errdefs.LaminaError, match="Cannot link to a non running container: /web-server AS "
                                                   "/client/my-web"):
        engine.containers.start(client)
    # rm --link: the link is gone from the parent, the target stays
    with pytest.raises(errdefs.NotFound, match="No such container: client/other"):
        engine.containers.remove_link("client/other")
    with pytest.raises(errdefs.Conflict, match="cannot remove the default link name"):
        engine.containers.remove_link("client")
    engine.containers.remove_link("client/my-web")
    assert engine.container_views.inspect(client)["HostConfig"]["Links"] is None
    [listed] = [item for item in engine.container_views.list_containers(all=True) if item["Id"] == web]
    assert listed["Names"] == ["/web-server"]
    assert engine.container_views.inspect(web)["Name"] == "/web-server"
    engine.containers.start(client)  # no link left: the stopped target does not matter
    assert engine.wait(client) != 0  # the alias is unknown now


@pytest.mark.privileged
@pytest.mark.parametrize(("host", "error", "message"), [
    ({"Links": ["missing:alias"]}, errdefs.InvalidArgument,
     "could not get container for missing: No such container: missing"),
    ({"Links": ["target:a:b"]}, errdefs.InvalidArgument, "bad format for links: target:a:b"),
    ({"Links": [""]}, errdefs.InvalidArgument, "empty string specified for links"),
    ({"Links": ["target"], "NetworkMode": "host"}, errdefs.InvalidArgument,
     "host type networking can't be used with links"),
    ({"Links": ["target"], "NetworkMode": "none"}, errdefs.InvalidArgument, "not with network mode none"),
])
def test_bad_links_create_nothing(net, host, error, message) -> None:  # noqa: F811
    engine, _ = net
    engine.create("true", name="target")
    before = set(engine.container_ids())
    with pytest.raises(error, match=message):
        engine.create("true", name="linker", HostConfig=host)
    assert set(engine.container_ids()) == before


@pytest.mark.privileged
def test_linking_to_itself_is_refused(net) -> None:  # noqa: F811
    engine, _ = net
    with pytest.raises(errdefs.InvalidArgument, match="could not get container for self"):
        engine.create("true", name="self", HostConfig={"Links": ["self:me"]})
    assert engine.container_ids() == []


def test_consecutive_ports_give_the_range_variables_and_the_lowest_port_is_the_default() -> None:
    link = links.Link(name="/app/db", alias="db", target_name="/database", target_hostname="h", address="10.0.0.2",
                      ports=links._ports({"8002/tcp": {}, "8000/tcp": {}, "8001/tcp": {}, "53/udp": {}}),
                      target_env=("HOME=/root", "A=b=c", "NOVALUE"))
    env = links.environment([link])
    assert env[0] == "DB_PORT=udp://10.0.0.2:53"
    for variable in ("DB_PORT_8000_TCP_START=tcp://10.0.0.2:8000", "DB_PORT_8000_TCP_PORT_START=8000",
                     "DB_PORT_8000_TCP_END=tcp://10.0.0.2:8002", "DB_PORT_8000_TCP_PORT_END=8002",
                     "DB_PORT_8001_TCP=tcp://10.0.0.2:8001", "DB_PORT_53_UDP_PROTO=udp", "DB_NAME=/app/db",
                     "DB_ENV_A=b=c"):
        assert variable in env
    assert not any(item.startswith(("DB_ENV_HOME", "DB_ENV_NOVALUE")) for item in env)
    assert links.hosts_lines([link]) == "10.0.0.2\tdb h database\n"
    assert links.parse("/database:/app/db") == ("database", "db")
    assert links.parse("database") == ("database", "database")


@pytest.mark.privileged
def test_the_cli_links_with_run_and_create() -> None:
    from cli.test_containers_e2e import loaded_engine

    with loaded_engine("lln-") as lamina:
        lamina.ok("run", "-d", "--name", "db", "-e", "DB_PASS=x", "--expose", "5432", "busybox", "sleep", "60")
        result = lamina("run", "--rm", "--link", "db:data-base", "busybox", "sh", "-c",
                        "ping -c1 -W3 data-base >/dev/null && ping -c1 -W3 db >/dev/null && env | grep ^DATA_BASE_")
        assert result.code == 0, result.err
        address = lamina.ok("inspect", "-f", "{{.NetworkSettings.Networks.bridge.IPAddress}}", "db").strip()
        assert f"DATA_BASE_PORT=tcp://{address}:5432" in result.out.splitlines()
        assert "DATA_BASE_ENV_DB_PASS=x" in result.out.splitlines()
        lamina.ok("create", "--name", "app", "--link", "db", "busybox", "true")
        assert lamina.ok("inspect", "-f", "{{json .HostConfig.Links}}", "app").strip() == '["/db:/app/db"]'
        lamina.ok("rm", "--link", "app/db")
        assert lamina.ok("inspect", "-f", "{{json .HostConfig.Links}}", "app").strip() == "null"
        assert lamina.ok("inspect", "-f", "{{.State.Running}}", "db").strip() == "true"
        refused = lamina("run", "--rm", "--link", "nosuch:alias", "busybox", "true")
        assert refused.code == 125 and "could not get container for nosuch" in refused.err


def _user_network(engine, names, name: str) -> None:  # noqa: F811
    engine.services.networks.create({"Name": name, "IPAM": {"Config": [{"Subnet": names.subnet()}]},
                                     "Options": {"com.docker.network.bridge.name": names.bridge()}})


@pytest.mark.privileged
def test_a_link_on_a_user_network_is_an_alias_for_the_linking_container_only(net) -> None:  # noqa: F811
    engine, names = net
    _user_network(engine, names, "linked")
    _user_network(engine, names, "elsewhere")
    web = engine.run("httpd", "-f", "-p", "80", "-h", "/etc", name="web-server", HostConfig={"NetworkMode": "linked"},
                     ExposedPorts={"80/tcp": {}})
    engine.run("sleep", "30", name="far", HostConfig={"NetworkMode": "elsewhere"})
    address = engine.container_views.inspect(web)["NetworkSettings"]["Networks"]["linked"]["IPAddress"]
    # as Docker: HostConfig.Links moves to the network's endpoint; targets are not checked
    given = ["web-server:my-web", "far:far-alias", "nosuch:ghost"]
    client = engine.create("sh", "-c", "wget -qO- http://my-web/hostname && cat /etc/hosts && env && "
                           "(ping -c1 -W1 ghost >/dev/null 2>&1 || echo ghost-unknown) && "
                           "(ping -c1 -W1 far-alias >/dev/null 2>&1 || echo far-alias-unknown)",
                           name="client", HostConfig={"NetworkMode": "linked", "Links": given})
    inspected = engine.container_views.inspect(client)
    assert inspected["HostConfig"]["Links"] is None
    assert inspected["NetworkSettings"]["Networks"]["linked"]["Links"] == given
    engine.containers.start(client)
    assert engine.wait(client) == 0, engine.output(client)
    lines = engine.output(client).splitlines()
    assert web[:12] in lines and f"{address}\tmy-web web-server" in lines
    assert "ghost-unknown" in lines and "far-alias-unknown" in lines
    assert not any(line.startswith("MY_WEB_") for line in lines)  # no legacy variables
    # the alias is this container's only
    stranger = engine.run("sh", "-c", "ping -c1 -W1 my-web >/dev/null 2>&1 || echo unknown",
                          HostConfig={"NetworkMode": "linked"})
    engine.wait(stranger)
    assert engine.output(stranger).split() == ["unknown"]
    # a running linker shows its links; EndpointsConfig.Links work as HostConfig.Links do
    sleeper = engine.run("sleep", "30", HostConfig={"NetworkMode": "linked"},
                         NetworkingConfig={"EndpointsConfig": {"linked": {"Links": ["web-server:site"]}}})
    running = engine.container_views.inspect(sleeper)["NetworkSettings"]["Networks"]["linked"]
    assert running["Links"] == ["web-server:site"] and running["IPAddress"]
    hosts = open(engine.container_views.inspect(sleeper)["HostsPath"], encoding="utf-8").read()
    assert f"{address}\tsite web-server" in hosts.splitlines()


@pytest.mark.privileged
def test_bad_links_on_networks_are_refused(net) -> None:  # noqa: F811
    engine, names = net
    _user_network(engine, names, "strict")
    before = set(engine.container_ids())
    for host, networking, message in [
        ({}, {"EndpointsConfig": {"bridge": {"Links": ["a:b"]}}}, "links are only supported for user-defined"),
        ({"NetworkMode": "strict", "Links": ["a:b:c"]}, {}, "bad format for links: a:b:c"),
        ({"NetworkMode": "strict"}, {"EndpointsConfig": {"strict": {"Links": [""]}}}, "empty string"),
    ]:
        with pytest.raises(errdefs.InvalidArgument, match=message):
            engine.create("true", HostConfig=host, NetworkingConfig=networking)
    assert set(engine.container_ids()) == before
    web = engine.run("sleep", "30", name="target", HostConfig={"NetworkMode": "strict"})
    address = engine.container_views.inspect(web)["NetworkSettings"]["Networks"]["strict"]["IPAddress"]
    running = engine.run("sleep", "30")
    with pytest.raises(errdefs.Conflict, match="when the container starts"):
        engine.services.networks.connect("strict", running, {"Links": ["target:t"]})
    with pytest.raises(errdefs.InvalidArgument, match="links are only supported for user-defined"):
        engine.services.networks.connect("bridge", engine.create("true"), {"Links": ["target:t"]})
    # connected while stopped: the link applies at the start
    linker = engine.create("cat", "/etc/hosts", HostConfig={"NetworkMode": "bridge"})
    engine.services.networks.connect("strict", linker, {"Links": ["target:t"]})
    assert engine.container_views.inspect(linker)["NetworkSettings"]["Networks"]["strict"]["Links"] == ["target:t"]
    engine.containers.start(linker)
    assert engine.wait(linker) == 0
    assert f"{address}\tt target" in engine.output(linker).splitlines()


@pytest.mark.privileged
def test_the_cli_links_on_a_user_network(names) -> None:
    from cli.test_containers_e2e import loaded_engine

    with loaded_engine("lul-") as lamina:
        lamina.ok("network", "create", "--subnet", names.subnet(), "-o",
                  f"com.docker.network.bridge.name={names.bridge()}", "clinet")
        lamina.ok("run", "-d", "--name", "db", "--network", "clinet", "busybox", "sleep", "60")
        result = lamina("run", "--rm", "--network", "clinet", "--link", "db:data-base", "busybox", "sh", "-c",
                        "ping -c1 -W3 data-base >/dev/null && grep data-base /etc/hosts")
        assert result.code == 0, result.err
        address = lamina.ok("inspect", "-f", "{{.NetworkSettings.Networks.clinet.IPAddress}}", "db").strip()
        assert result.out.splitlines() == [f"{address}\tdata-base db"]
        lamina.ok("create", "--name", "app", "--network", "clinet", "--link", "db", "busybox", "true")
        assert lamina.ok("inspect", "-f", "{{json .NetworkSettings.Networks.clinet.Links}}", "app").strip() == '["db"]'
        assert lamina.ok("inspect", "-f", "{{json .HostConfig.Links}}", "app").strip() == "null"
        lamina.ok("rm", "-f", "db", "app")


@pytest.mark.privileged
def test_a_target_starting_after_its_linker_or_with_a_new_address_is_followed(net) -> None:  # noqa: F811
    engine, names = net
    _user_network(engine, names, "later")
    linker = engine.run("sleep", "60", name="linker", HostConfig={"NetworkMode": "later", "Links": ["late:lateal"]})
    inside = f"/proc/{engine.container_views.inspect(linker)['State']['Pid']}/root/etc/hosts"

    def entries() -> list[str]:
        with open(inside, encoding="utf-8") as handle:
            return [line for line in handle.read().splitlines() if line.endswith("\tlateal late")]

    assert entries() == []
    late = engine.run("sleep", "60", name="late", HostConfig={"NetworkMode": "later"})
    first = engine.container_views.inspect(late)["NetworkSettings"]["Networks"]["later"]["IPAddress"]
    assert entries() == [f"{first}\tlateal late"]
    engine.containers.stop(late, timeout=1)
    # another container takes its address (waiting for the stopped run's teardown): it gets a new one
    engine.run("sleep", "60", HostConfig={"NetworkMode": "later"},
               NetworkingConfig={"EndpointsConfig": {"later": {"IPAMConfig": {"IPv4Address": first}}}})
    engine.containers.start(late)
    second = engine.container_views.inspect(late)["NetworkSettings"]["Networks"]["later"]["IPAddress"]
    assert second != first
    assert entries() == [f"{second}\tlateal late"]
