"""``POST /build`` with a tar body through the real router and services, ``POST /build/prune``
and ``system df``; the ``lamina build`` / ``lamina builder prune`` commands (in-process, with
the context read in place or sent as a tar)."""

from __future__ import annotations

import io
import json
import os
import tarfile
import urllib.parse

import pytest

from lamina.api.http import Request, Response
from lamina.api.router import Router
from lamina.cli import main as cli_main

pytestmark = pytest.mark.privileged


def context_tar(files: dict[str, str], *, gzip: bool = False) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gzip else "w") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.uid = 1000  # the docker CLI sends 0:0; a tar from elsewhere may not
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def post_build(router: Router, body: bytes, **query: object) -> Response:
    pairs = []
    for key, value in query.items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append((key, item if isinstance(item, str) else json.dumps(item)))
    target = "/v1.45/build" + ("?" + urllib.parse.urlencode(pairs) if pairs else "")
    return router.handle(Request.from_target("POST", target, {"Content-Type": "application/x-tar"}, io.BytesIO(body)))


def lines(response: Response) -> list[dict]:
    return [json.loads(line) for line in response.read_body().splitlines() if line.strip()]


@pytest.fixture
def router(engine) -> Router:
    return Router(lambda: engine.services)


DOCKERFILE = "FROM busybox\nARG WHO\nRUN echo \"hello $WHO\" > /hello\nCOPY app.txt /app/\nCMD [\"cat\", \"/hello\"]\n"


def test_build_through_the_api_with_a_tar_body(engine, router) -> None:
    body = context_tar({"build/Dockerfile.dev": DOCKERFILE, "app.txt": "app\n"}, gzip=True)
    response = post_build(router, body, dockerfile="build/Dockerfile.dev", t=["api:one", "api:two"],
                          buildargs={"WHO": "api"}, labels={"via": "api"})
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    messages = lines(response)
    text = "".join(message.get("stream", "") for message in messages)
    assert text.startswith("Step 1/6 : FROM busybox\n ---> ")
    assert "Step 6/6 : LABEL via=api\n" in text
    assert " ---> Running in " in text and "Removing intermediate container" in text
    aux = [message["aux"]["ID"] for message in messages if "aux" in message]
    assert len(aux) == 1 and aux[0].startswith("sha256:")
    assert text.endswith(f"Successfully built {aux[0][7:19]}\nSuccessfully tagged api:one\n"
                         "Successfully tagged api:two\n")
    image = engine.config_of("api:two")
    assert image["config"]["Labels"] == {"via": "api"}
    with engine.files("api:one") as root:
        assert (root / "hello").read_text() == "hello api\n"
        owner = (root / "app/app.txt").stat()
        assert (owner.st_uid, owner.st_gid) == (0, 0)
    # the same context again: every step from the cache
    again = lines(post_build(router, body, dockerfile="build/Dockerfile.dev", buildargs={"WHO": "api"},
                             labels={"via": "api"}, q="1"))
    assert again == [{"stream": aux[0] + "\n"}]


def test_a_failed_run_ends_the_stream_with_dockers_error_and_its_code(engine, router) -> None:
    body = context_tar({"Dockerfile": "FROM busybox\nRUN echo before && exit 7\n"})
    messages = lines(post_build(router, body, t="never:latest"))
    assert messages[-1] == {"errorDetail": {"message": "Dockerfile:2: The command '/bin/sh -c echo before && exit 7' "
                                                       "returned a non-zero code: 7", "code": 7},
                            "error": "Dockerfile:2: The command '/bin/sh -c echo before && exit 7' returned a "
                                     "non-zero code: 7"}
    assert any("before" in message.get("stream", "") for message in messages)
    assert engine.container_ids() == []
    quiet = lines(post_build(router, body, q="1"))
    assert "Step 1/2 : FROM busybox\n" in quiet[0]["stream"] and "errorDetail" in quiet[-1]


@pytest.mark.parametrize(("files", "query", "status", "message"), [
    ({"Dockerfile": "FROM busybox\nNOPE x\n"}, {}, 400, "Dockerfile:2: unknown instruction: NOPE"),
    ({"Dockerfile": "FROM busybox\n"}, {"t": "Bad Name"}, 400, "invalid reference format"),
    ({"other": "x"}, {}, 404, "Cannot locate specified Dockerfile: Dockerfile"),
    ({"Dockerfile": "FROM busybox\n"}, {"remote": "https://example.com/x.git"}, 501, "remote build contexts"),
    ({"Dockerfile": "FROM busybox\n"}, {"buildargs": "[1]"}, 400, "invalid buildargs"),
    ({"Dockerfile": "FROM busybox\n"}, {"target": "nope"}, 400, "failed to reach build target nope"),
], ids=["a syntax error", "a bad tag", "no Dockerfile", "a remote context", "bad build args", "an unknown target"])
def test_failures_before_any_output_are_http_errors(engine, router, files, query, status, message) -> None:
    response = post_build(router, context_tar(files), **query)
    assert response.status == status
    assert message in json.loads(response.read_body())["message"]


def test_builder_prune_and_system_df(engine, router) -> None:
    context = engine.context({"Dockerfile": "FROM busybox\nRUN echo one > /one\nRUN echo two > /two\n"})
    kept = engine.build(context, tags=("kept:latest",))
    (context / "Dockerfile").write_text("FROM busybox\nRUN echo one > /one\nRUN head -c 5000 /dev/zero > /big\n")
    dangling = engine.build(context)
    usage = json.loads(router.handle(Request.from_target("GET", "/v1.45/system/df")).read_body())["BuildCache"]
    by_id = {item["ID"]: item for item in usage}
    assert set(by_id) == {dangling[7:], engine.services.images.images.get_parent(kept).hex}
    assert by_id[dangling[7:]]["Size"] == 5000 and not by_id[dangling[7:]]["Shared"]
    assert by_id[dangling[7:]]["Description"] == "/bin/sh -c head -c 5000 /dev/zero > /big"
    parent_of_kept = engine.services.images.images.get_parent(kept).hex
    assert by_id[parent_of_kept]["Shared"] and by_id[parent_of_kept]["Type"] == "regular"
    report = json.loads(router.handle(Request.from_target("POST", "/v1.45/build/prune")).read_body())
    assert report == {"CachesDeleted": [dangling[7:]], "SpaceReclaimed": 5000}
    assert engine.services.images.resolve("kept:latest") == kept
    # the shared step is still a cache hit for a new build of the kept image
    (context / "Dockerfile").write_text("FROM busybox\nRUN echo one > /one\nRUN echo two > /two\n")
    assert engine.build(context) == kept
    report = json.loads(router.handle(Request.from_target("POST", "/v1.45/build/prune?all=1")).read_body())
    assert report["CachesDeleted"] == [parent_of_kept] and report["SpaceReclaimed"] == 0
    assert engine.services.images.resolve("kept:latest") == kept  # its layers stay with it
    with engine.files("kept") as root:
        assert (root / "one").read_text() == "one\n"
    bad = router.handle(Request.from_target("POST", '/v1.45/build/prune?filters={"type":["x"]}'))
    assert bad.status == 400


# -- the CLI --------------------------------------------------------------------------------------

@pytest.fixture
def cli(engine, monkeypatch, capsys):
    monkeypatch.setenv("LAMINA_EXEC_ROOT", str(engine.root / "run"))
    monkeypatch.delenv("LAMINA_HOST", raising=False)
    monkeypatch.delenv("DOCKER_HOST", raising=False)

    def run(*arguments: str) -> tuple[int, str, str]:
        code = cli_main.main(["--data-root", str(engine.root / "data"), *arguments])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.mark.parametrize("send_tar", [False, True], ids=["read in place", "sent as a tar"])
def test_cli_build_prints_the_classic_output_and_writes_the_iidfile(engine, cli, monkeypatch, send_tar) -> None:
    if send_tar:
        monkeypatch.setenv("LAMINA_BUILD_SEND_CONTEXT", "1")
    context = engine.context({"Dockerfile": DOCKERFILE, "app.txt": "app\n", "ignored.log": "x",
                              ".dockerignore": "*.log\n"})
    outside = engine.root / "Outside.Dockerfile"
    outside.write_text("FROM busybox\nCOPY . /ctx/\n")
    code, out, err = cli("build", "-t", "cli:latest", "--build-arg", "WHO=cli", str(context))
    assert code == 0, err
    assert out.splitlines()[0] == "Step 1/5 : FROM busybox"
    assert "Step 3/5 : RUN echo \"hello $WHO\" > /hello" in out and " ---> Running in " in out
    assert out.splitlines()[-1] == "Successfully tagged cli:latest"
    iidfile = engine.root / "iid"
    code, out, err = cli("build", "-q", "--iidfile", str(iidfile), "--build-arg", "WHO=cli", str(context))
    image_id = engine.services.images.resolve("cli:latest")
    assert (code, out) == (0, f"{image_id}\n")
    assert iidfile.read_text() == image_id
    code, out, err = cli("build", "-q", "-f", str(outside), "-t", "outside", str(context))
    assert code == 0, err
    with engine.files("outside") as root:
        assert sorted(os.listdir(root / "ctx")) == [".dockerignore", "Dockerfile", "app.txt"]


def test_cli_build_of_a_failing_run_exits_1_with_the_message(engine, cli) -> None:
    context = engine.context({"Dockerfile": "FROM busybox\nRUN exit 3\n"})
    code, out, err = cli("build", "-t", "failed", str(context))
    assert code == 1
    assert err == "Dockerfile:2: The command '/bin/sh -c exit 3' returned a non-zero code: 3\n"
    assert "Step 2/2 : RUN exit 3" in out
    code, out, err = cli("build", str(engine.root / "nowhere"))
    assert code != 0 and "unable to prepare context" in err
    (context / "Dockerfile").write_text("FROM busybox\nBOGUS\n")
    code, out, err = cli("build", str(context))
    assert (code, err) == (3, "Error response from daemon: Dockerfile:2: unknown instruction: BOGUS\n")


def test_cli_build_from_stdin_and_builder_prune(engine, cli, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"FROM busybox\nRUN echo x > /x\n")))
    code, out, err = cli("build", "-t", "stdin", "-")
    assert code == 0, err
    with engine.files("stdin") as root:
        assert (root / "x").read_text() == "x\n"
    tar = context_tar({"Dockerfile": "FROM busybox\nCOPY a /a\n", "a": "from a tar on stdin"})
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(tar)))
    code, out, err = cli("build", "-t", "stdintar", "-")
    assert code == 0, err
    with engine.files("stdintar") as root:
        assert (root / "a").read_text() == "from a tar on stdin"
    context = engine.context({"Dockerfile": "FROM busybox\nRUN echo dangling > /d\n"})
    code, out, err = cli("build", "-q", str(context))
    assert code == 0, err
    code, out, err = cli("system", "df")
    assert [line.split()[:3] for line in out.splitlines() if line.startswith("Build Cache")] == [["Build", "Cache", "1"]]
    code, out, err = cli("builder", "prune", "-f")
    assert code == 0, err
    assert out.startswith("Deleted build cache objects:\n") and "Total reclaimed space: " in out


def test_prune_spares_what_a_running_build_may_still_need(engine, router) -> None:
    import fcntl

    context = engine.context({"Dockerfile": "FROM busybox\nRUN echo x > /x\n"})
    locks = engine.root / "run" / "builds"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / "0123456789abcdef.lock", "w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # a build in another process, started now
        dangling = engine.build(context)
        usage = json.loads(router.handle(Request.from_target("GET", "/v1.45/system/df")).read_body())["BuildCache"]
        assert [item["InUse"] for item in usage] == [True]
        report = json.loads(router.handle(Request.from_target("POST", "/v1.45/build/prune?all=1")).read_body())
        assert report["CachesDeleted"] is None
    report = json.loads(router.handle(Request.from_target("POST", "/v1.45/build/prune")).read_body())
    assert report["CachesDeleted"] == [dangling[7:]]
