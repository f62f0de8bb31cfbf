"""Build options docker-py's integration suite checks, through the router (``POST /build``) and
the ``lamina build`` command: RUN stderr marked as Docker's classic builder marks it,
``extrahosts`` / ``--add-host`` in RUN steps' ``/etc/hosts``, ``networkmode`` naming a network,
and ``cachefrom`` / ``--cache-from`` with Docker's semantics (only the sources' history and
ancestors are cache hits)."""

from __future__ import annotations

import io

import pytest
from test_builder_api import context_tar, lines, post_build

from lamina.api.router import Router
from lamina.cli import main as cli_main

pytestmark = pytest.mark.privileged

CACHED = "FROM busybox\nENV FOO=bar\nRUN echo baz > /baz\nRUN echo bax > /bax\n"


@pytest.fixture
def router(engine) -> Router:
    return Router(lambda: engine.services)


@pytest.fixture
def cli(engine, monkeypatch, capfd):
    monkeypatch.setenv("LAMINA_EXEC_ROOT", str(engine.root / "run"))
    monkeypatch.delenv("LAMINA_HOST", raising=False)
    monkeypatch.delenv("DOCKER_HOST", raising=False)

    def run(*arguments: str) -> tuple[int, str, str]:
        code = cli_main.main(["--data-root", str(engine.root / "data"), *arguments])
        captured = capfd.readouterr()
        return code, captured.out, captured.err

    return run


def cache_hits(messages: list[dict]) -> int:
    return sum(" ---> Using cache\n" == message.get("stream") for message in messages)


def test_run_stderr_is_wrapped_in_red_in_the_stream_and_printed_so_by_the_cli(router, cli, engine) -> None:
    dockerfile = "FROM busybox\nRUN echo to-stdout; echo to-stderr >&2\n"
    messages = lines(post_build(router, context_tar({"Dockerfile": dockerfile}), nocache="1"))
    streams = [message.get("stream") for message in messages]
    assert "\x1b[91mto-stderr\n\x1b[0m" in streams
    assert "to-stdout\n" in streams
    # the docker CLI prints the stream as it is, escape codes included, on stdout
    code, out, err = cli("build", "--no-cache", str(engine.context({"Dockerfile": dockerfile})))
    assert code == 0, err
    assert "\x1b[91mto-stderr\n\x1b[0m" in out and "to-stdout\n" in out


def test_extra_hosts_reach_the_run_steps_hosts_file(router, cli, engine) -> None:
    dockerfile = "FROM busybox\nRUN cp /etc/hosts /hosts-file\n"
    messages = lines(post_build(router, context_tar({"Dockerfile": dockerfile}), t="hosts:api",
                                extrahosts=["extrahost.local.test:127.0.0.1", "hello.world.test:10.1.2.3"]))
    assert "errorDetail" not in messages[-1], messages
    with engine.files("hosts:api") as root:
        hosts = (root / "hosts-file").read_text()
    assert "127.0.0.1\textrahost.local.test\n" in hosts and "10.1.2.3\thello.world.test\n" in hosts
    context = engine.context({"Dockerfile": dockerfile})
    code, out, err = cli("build", "--no-cache", "-t", "hosts:cli", "--add-host", "cli.test=192.0.2.7", str(context))
    assert code == 0, err
    with engine.files("hosts:cli") as root:
        assert "192.0.2.7\tcli.test\n" in (root / "hosts-file").read_text()
    code, out, err = cli("build", "--add-host", "nocolon", str(context))
    assert code == 2 and 'bad format for add-host: "nocolon"' in err
    code, out, err = cli("build", "--add-host", "name:not-an-ip", str(context))
    assert code == 2 and 'invalid IP address in add-host: "not-an-ip"' in err


def test_a_build_runs_on_a_named_network_and_a_missing_one_fails(router, engine) -> None:
    network = engine.services.networks.create({"Name": "buildnet"})["Id"]
    try:
        dockerfile = "FROM busybox\nRUN ip -4 addr show eth0 | grep -q 'inet ' && echo on-network\n"
        messages = lines(post_build(router, context_tar({"Dockerfile": dockerfile}), networkmode="buildnet"))
        assert "errorDetail" not in messages[-1], messages
        assert {"stream": "on-network\n"} in messages
        messages = lines(post_build(router, context_tar({"Dockerfile": dockerfile}), networkmode="nosuchnet",
                                    nocache="1"))
        assert "network nosuchnet not found" in messages[-1]["error"]
    finally:
        engine.services.networks.remove(network)


def test_cache_from_matches_only_the_named_images(router, engine) -> None:
    context = context_tar({"Dockerfile": CACHED})
    assert "errorDetail" not in lines(post_build(router, context, t="build1"))[-1]
    # the local cache would answer every step: with sources, only through build1's ancestry
    messages = lines(post_build(router, context, t="build2", cachefrom='["build1"]'))
    assert cache_hits(messages) == 3
    assert engine.services.images.resolve("build2") == engine.services.images.resolve("build1")
    messages = lines(post_build(router, context, t="build3", cachefrom='["nosuchtag"]'))
    assert cache_hits(messages) == 0
    assert engine.services.images.resolve("build3") != engine.services.images.resolve("build1")
    response = post_build(router, context, cachefrom="not json")
    assert response.status == 400 and b"invalid cachefrom" in response.read_body()


def test_cache_from_an_image_without_local_history_restores_its_steps(router, cli, engine) -> None:
    context = context_tar({"Dockerfile": CACHED})
    assert "errorDetail" not in lines(post_build(router, context, t="source"))[-1]
    source = engine.services.images.resolve("source")
    saved = b"".join(engine.services.images.save(["source"]))
    engine.services.images.remove_image("source")
    engine.services.images.load(io.BytesIO(saved), progress=lambda message: None)
    assert engine.services.images.resolve("source") == source
    # the loaded image has no parents here: only its history can match
    messages = lines(post_build(router, context, t="again", cachefrom='["source"]'))
    assert cache_hits(messages) == 3
    assert engine.services.images.resolve("again") == source
    with engine.files("again") as root:
        assert (root / "baz").read_text() == "baz\n" and (root / "bax").read_text() == "bax\n"
    restored_env = engine.services.images.images.get_parent(source)
    assert restored_env is not None
    assert len(engine.config_of(str(restored_env))["history"]) == len(engine.config_of("busybox")["history"]) + 2
    # a changed step misses and the build goes on without the cache
    changed = context_tar({"Dockerfile": CACHED.replace("echo bax", "echo other")})
    messages = lines(post_build(router, changed, t="changed", cachefrom='["source"]'))
    assert cache_hits(messages) == 2 and "errorDetail" not in messages[-1]
    code, out, err = cli("build", "--cache-from", "source", "-t", "cli", str(engine.context({"Dockerfile": CACHED})))
    assert code == 0, err
    assert out.count(" ---> Using cache\n") == 3
    assert engine.services.images.resolve("cli") == source
