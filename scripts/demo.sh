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
echo "== lamina info"
$LAMINA info
echo "== lamina system df"
$LAMINA system df
echo "== lamina system check"
$LAMINA system check
