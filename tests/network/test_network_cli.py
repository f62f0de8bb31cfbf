"""``lamina network create/ls/inspect/rm/prune`` in-process on a real network service (records
only: no container, nothing reaches netavark)."""

from __future__ import annotations

import json

import pytest

from lamina.cli.main import main
from lamina.client import transport as transport_module
from lamina.config import EngineConfig
from lamina.events.log import EventLog

from .test_network_api import Services


@pytest.fixture
def services(tmp_path, monkeypatch) -> Services:
    config = EngineConfig(data_root=str(tmp_path / "data"), exec_root=str(tmp_path / "run"))
    instance = Services(config, EventLog(str(tmp_path / "data" / "events")))
    monkeypatch.setattr(transport_module, "build_default_services", lambda config: instance)
    for name in ("LAMINA_HOST", "DOCKER_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LAMINA_DATA_ROOT", str(tmp_path / "data"))
    return instance


def lamina(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_network_create_ls_inspect_rm_prune(services, capsys) -> None:
    code, out, err = lamina(capsys, "network", "create", "--subnet", "10.250.1.0/24", "--gateway", "10.250.1.254",
                            "--ip-range", "10.250.1.0/25", "--aux-address", "printer=10.250.1.9", "--internal",
                            "--label", "team=a", "-o", "com.docker.network.driver.mtu=1400", "backend")
    assert code == 0, err
    network_id = out.strip()
    assert len(network_id) == 64
    code, out, _ = lamina(capsys, "network", "ls")
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert [row[1:] for row in rows[1:]] == [["backend", "bridge", "local"], ["bridge", "bridge", "local"],
                                              ["host", "host", "local"], ["none", "null", "local"]]
    code, out, _ = lamina(capsys, "network", "ls", "-q", "--no-trunc", "--filter", "label=team=a")
    assert out.split() == [network_id]
    code, out, _ = lamina(capsys, "network", "inspect", "backend")
    [resource] = json.loads(out)
    assert resource["Internal"] is True and resource["IPAM"]["Config"] == [{
        "Subnet": "10.250.1.0/24", "Gateway": "10.250.1.254", "IPRange": "10.250.1.0/25",
        "AuxiliaryAddresses": {"printer": "10.250.1.9"}}]
    code, out, err = lamina(capsys, "network", "inspect", "-f", "{{.Name}}", "host", "nope")
    assert out == "host\n" and "No such network: nope" in err and code != 0
    code, _, err = lamina(capsys, "network", "create", "backend")
    assert code != 0 and "already exists" in err
    code, _, err = lamina(capsys, "network", "rm", "bridge")
    assert code != 0 and "pre-defined network" in err
    code, out, _ = lamina(capsys, "network", "rm", "backend")
    assert code == 0 and out.strip() == "backend"
    lamina(capsys, "network", "create", "spare")
    code, out, _ = lamina(capsys, "network", "prune", "-f")
    assert code == 0 and out.split() == ["Deleted", "Networks:", "spare"]


def test_two_subnets_are_refused_by_the_cli(services, capsys) -> None:
    code, _, err = lamina(capsys, "network", "create", "--subnet", "10.250.2.0/24", "--subnet", "10.250.3.0/24", "x")
    assert code != 0 and "one IPv4 and one IPv6 --subnet" in err


def test_an_ipv6_subnet_beside_the_ipv4_one(services, capsys) -> None:
    code, out, err = lamina(capsys, "network", "create", "--ipv6", "--subnet", "fd6c:77:1::/64", "--gateway",
                            "fd6c:77:1::fe", "--subnet", "10.250.4.0/24", "dual")
    assert code == 0, err
    code, out, _ = lamina(capsys, "network", "inspect", "-f", "{{json .IPAM.Config}} {{.EnableIPv6}}", "dual")
    assert out.strip() == ('[{"Subnet":"10.250.4.0/24","Gateway":"10.250.4.1"},'
                           '{"Subnet":"fd6c:77:1::/64","Gateway":"fd6c:77:1::fe"}] true')
    code, _, err = lamina(capsys, "network", "create", "--subnet", "fd6c:77:2::/64", "six")
    assert code != 0 and "needs IPv6 enabled" in err


def test_ip_and_ip6_flags_make_the_endpoints_ipam_config() -> None:
    import argparse

    from lamina.cli.container_flags import configure_create, create_body

    parser = argparse.ArgumentParser(add_help=False)  # run's own -h/--help flags
    configure_create(parser, run=True)
    args = parser.parse_args(["--network", "dual", "--ip", "10.250.4.9", "--ip6", "fd6c:77:1::9", "busybox"])
    body = create_body(args)
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"dual": {"IPAMConfig": {
        "IPv4Address": "10.250.4.9", "IPv6Address": "fd6c:77:1::9"}}}}
    body = create_body(parser.parse_args(["--network", "dual", "--ip6", "fd6c:77:1::9", "busybox"]))
    assert body["NetworkingConfig"]["EndpointsConfig"]["dual"] == {"IPAMConfig": {"IPv6Address": "fd6c:77:1::9"}}
