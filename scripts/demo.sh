#!/bin/sh
# The main job: build a busybox base image from Debian's busybox-static and show it.
# Usage: scripts/demo.sh [DATA_ROOT]   (run as root; `make demo` calls it)
set -eu
cd "$(dirname "$0")/.."
DATA_ROOT=${1:-/var/lib/lamina}
FIXTURES=${LAMINA_FIXTURES:-../shared/fixtures}
[ -x "$FIXTURES/make-busybox-rootfs.sh" ] || FIXTURES=tests/fixtures
LAMINA=".venv/bin/lamina --data-root $DATA_ROOT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lamina-demo.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM

deb=$(ls /var/cache/apt/archives/busybox-static_*.deb 2>/dev/null | head -1 || true)
if [ -n "$deb" ]; then export BUSYBOX_DEB="$deb"; fi
"$FIXTURES/make-busybox-rootfs.sh" "$WORK/rootfs"

echo "== lamina load: Docker's own archive of busybox (tagged busybox:docker)"
$LAMINA load -i "$FIXTURES/busybox-docker-archive.tar"
$LAMINA tag busybox:latest busybox:docker

echo "== lamina import: a base image from Debian's busybox-static (tagged busybox:latest)"
tar --numeric-owner --sort=name -C "$WORK/rootfs" -c . |
    $LAMINA import -c 'CMD ["sh"]' -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -m "busybox-static rootfs (Debian)" - busybox:latest

echo "== lamina images"
$LAMINA images
echo "== lamina history busybox"
$LAMINA history busybox
echo "== lamina save | skopeo inspect"
$LAMINA save -o "$WORK/busybox.tar" busybox:latest
if command -v skopeo >/dev/null 2>&1; then
    skopeo inspect --format 'skopeo sees {{.Digest}} with {{len .Layers}} layer(s)' "docker-archive:$WORK/busybox.tar"
fi
echo "== lamina run: a container from the busybox-static image"
$LAMINA run --rm --name demo busybox sh -c 'echo "hello from $(hostname), pid $$, $(busybox | head -1)"'
echo "== lamina build: a one-step Dockerfile on top of it"
mkdir -p "$WORK/ctx"
printf 'FROM busybox\nRUN echo built > /built.txt\nCMD ["cat", "/built.txt"]\n' > "$WORK/ctx/Dockerfile"
$LAMINA build -t demo:built "$WORK/ctx"
$LAMINA run --rm -v demo-data:/data demo:built
$LAMINA volume rm demo-data >/dev/null
echo "== lamina network: two containers on a user-defined network, one publishing a port"
$LAMINA network create demo-net >/dev/null
mkdir -p "$WORK/www" && echo "hello from the web container" > "$WORK/www/index.html"
$LAMINA run -d --name demo-web --network demo-net --network-alias web -p 127.0.0.1::80 \
    -v "$WORK/www:/www:ro" busybox httpd -f -p 80 -h /www >/dev/null
$LAMINA port demo-web
port=$($LAMINA port demo-web 80/tcp | sed 's/.*://')
for _ in $(seq 50); do
    python3 -c "import urllib.request; print('host -> 127.0.0.1:$port:', urllib.request.urlopen('http://127.0.0.1:$port/').read().decode().strip())" 2>/dev/null && break
    sleep 0.1
done
$LAMINA run --rm --network demo-net busybox sh -c 'echo "client -> web: $(wget -qO- http://web/)"'
$LAMINA rm -f demo-web >/dev/null
$LAMINA network rm demo-net >/dev/null
echo "== lamina serve: the Docker Engine API on a unix socket; read-only lamina commands are handed to it"
$LAMINA serve -H "unix://$WORK/lamina.sock" >"$WORK/serve.log" 2>&1 &
serve_pid=$!
trap 'kill $serve_pid 2>/dev/null || true; rm -rf "$WORK"' EXIT INT TERM
for _ in $(seq 100); do [ -S "$WORK/lamina.sock" ] && break; sleep 0.1; done
if [ -x /usr/local/bin/docker ] || command -v docker >/dev/null 2>&1; then
    DOCKER_CONFIG="$WORK/docker-config" docker -H "unix://$WORK/lamina.sock" images
fi
.venv/bin/lamina -H "unix://$WORK/lamina.sock" ps -a --format '{{.Names}} {{.Image}} {{.Status}}'
.venv/bin/lamina -H "unix://$WORK/lamina.sock" image inspect --format 'busybox {{.Id}}' busybox
echo "lamina serve ran $(grep -c 'POST /lamina/command' "$WORK/serve.log" || true) command(s) for the lamina CLI"
kill $serve_pid 2>/dev/null || true
wait $serve_pid 2>/dev/null || true
trap 'rm -rf "$WORK"' EXIT INT TERM
echo "== the engine cache: a command that ran in-process leaves a warm engine that runs the next ones"
cache=$(LAMINA_DATA_ROOT=$DATA_ROOT .venv/bin/python3 -c 'import os
from lamina.cli.front import cache_socket
print(cache_socket(os.path.abspath(os.environ["LAMINA_DATA_ROOT"]), os.path.abspath(os.environ.get("LAMINA_EXEC_ROOT") or "/run/lamina"), os.environ))')
LAMINA_DATA_ROOT=$DATA_ROOT .venv/bin/lamina images --format '{{.Repository}}:{{.Tag}}' >/dev/null
for _ in $(seq 100); do [ -S "$cache" ] && [ -S "${cache%.sock}.fork.sock" ] && break; sleep 0.1; done
[ -S "$cache" ] || { echo "demo: no engine cache listens at $cache" >&2; exit 1; }
LAMINA_DATA_ROOT=$DATA_ROOT .venv/bin/lamina images --format '{{.Repository}}:{{.Tag}} {{.Size}}'
echo "answered by a worker of the engine cache's fork server (the cache: $cache, pid $(cat "${cache%.sock}.pid"); .venv/bin/lamina is the compiled front, which starts no Python for it)"
LAMINA_DATA_ROOT=$DATA_ROOT .venv/bin/lamina run --rm --network none busybox echo "run by a worker of the cache's fork server (pid $(cat "${cache%.sock}.fork.pid")), on this terminal"
echo "both leave after 60 idle seconds; stopped now"
kill "$(cat "${cache%.sock}.pid")" 2>/dev/null || true
if command -v docker-registry >/dev/null 2>&1; then
    echo "== lamina push / pull through a local registry (Debian's docker-registry on 127.0.0.1)"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    printf 'version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
        "$WORK/registry" "$port" > "$WORK/registry.yml"
    docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
    registry_pid=$!
    trap 'kill $registry_pid 2>/dev/null || true; rm -rf "$WORK"' EXIT INT TERM
    for _ in $(seq 50); do
        python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/v2/')" 2>/dev/null && break
        sleep 0.1
    done
    $LAMINA tag demo:built "127.0.0.1:$port/demo:built"
    $LAMINA push "127.0.0.1:$port/demo:built"
    $LAMINA rmi "127.0.0.1:$port/demo:built" demo:built >/dev/null
    $LAMINA pull "127.0.0.1:$port/demo:built"
    $LAMINA run --rm "127.0.0.1:$port/demo:built"
    $LAMINA rmi "127.0.0.1:$port/demo:built" >/dev/null
    kill $registry_pid 2>/dev/null || true
fi
echo "== lamina info"
$LAMINA info
echo "== lamina system df"
$LAMINA system df
echo "== lamina system check"
$LAMINA system check
