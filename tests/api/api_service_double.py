"""A test double of lamina.services.api (ImageService, SystemService, Services).

In-memory and deterministic: it exists so the router, the client and the CLI can be tested
without the engine.  It is not shipped and makes no claim about the real services beyond
their Protocol: it records the calls it gets and raises errdefs kinds where the real ones
would.  Special inputs trigger failures: an archive starting with ``b"bad"`` is rejected
before any progress (InvalidArgument), ``b"fail-late"`` fails after the first message
(DataLoss); saving the name ``"fail-mid"`` breaks after the first chunk.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO

from lamina import errdefs

__all__ = ["DoubleImages", "DoubleSystem", "DoubleServices", "BUSYBOX_ID", "UNTAGGED_ID"]

BUSYBOX_ID = "sha256:" + "b" * 64
UNTAGGED_ID = "sha256:" + "0" * 64
NOW = 1_700_000_000


class DoubleImages:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.tags: dict[str, str] = {"busybox:latest": BUSYBOX_ID,
                                     "localhost:5000/a/b:tag": BUSYBOX_ID}
        self.images: dict[str, dict[str, Any]] = {
            BUSYBOX_ID: {"Created": NOW - 14 * 86400, "Size": 4261550, "Comment": ""},
            UNTAGGED_ID: {"Created": NOW - 3600, "Size": 1000, "Comment": "untagged"},
        }
        self.load_gate: threading.Event | None = None
        self.emit_import_status = False
        self.cancelled = threading.Event()

    def _resolve(self, name: str) -> str:
        if name in self.images:
            return name
        full = name if ":" in name.rsplit("/", 1)[-1] else name + ":latest"
        if full in self.tags:
            return self.tags[full]
        for image_id in self.images:
            if image_id.removeprefix("sha256:").startswith(name) and len(name) >= 4:
                return image_id
        raise errdefs.NotFound(f"No such image: {name}")

    def load(self, stream: BinaryIO, *, progress: Any, quiet: bool = False) -> list[str]:
        data = stream.read()
        self.calls.append(("load", {"size": len(data), "quiet": quiet}))
        if data.startswith(b"bad"):
            raise errdefs.InvalidArgument("invalid archive: no manifest.json")
        if not quiet:
            progress({"status": "Loading layer", "id": "abcd1234",
                      "progressDetail": {"current": 1, "total": 2}})
        if data.startswith(b"fail-late"):
            raise errdefs.DataLoss("layer abcd1234: digest mismatch")
        if self.load_gate is not None:
            streamed = self.load_gate.wait(10)
            progress({"stream": "streamed\n" if streamed else "buffered\n"})
        if data.startswith(b"wait-cancel"):
            try:
                for _ in range(1000):
                    progress({"status": "Loading layer", "id": "abcd1234"})
                    threading.Event().wait(0.005)
            except errdefs.Cancelled:
                self.cancelled.set()
                raise
        if not quiet:
            progress({"status": "Loading layer", "id": "abcd1234",
                      "progressDetail": {"current": 2, "total": 2}})
        progress({"stream": "Loaded image: busybox:latest\n"})
        return ["busybox:latest"]

    def save(self, names: list[str], *, format: str = "docker") -> Iterator[bytes]:
        self.calls.append(("save", {"names": list(names), "format": format}))

        def chunks() -> Iterator[bytes]:
            for name in names:
                if name != "fail-mid":
                    self._resolve(name)
            yield f"{format}-archive:".encode()
            for name in names:
                if name == "fail-mid":
                    raise errdefs.System("write failed: no space left on device")
                yield name.encode() + b";"

        return chunks()

    def import_image(self, stream: BinaryIO, *, repository: str = "", tag: str = "",
                     changes: list[str] | None = None, message: str = "", progress: Any) -> str:
        data = stream.read()
        self.calls.append(("import", {"size": len(data), "repository": repository, "tag": tag,
                                      "changes": list(changes or []), "message": message}))
        if not data:
            raise errdefs.InvalidArgument("empty archive")
        progress({"status": "Importing", "progressDetail": {"current": len(data)}})
        image_id = "sha256:" + "1" * 64
        if self.emit_import_status:
            progress({"status": image_id})
        return image_id

    def list_images(self, *, all: bool = False, filters: dict[str, list[str]] | None = None,
                    digests: bool = False) -> list[dict[str, Any]]:
        self.calls.append(("list", {"all": all, "filters": filters, "digests": digests}))
        summaries = []
        for image_id, record in self.images.items():
            tags = sorted(name for name, target in self.tags.items() if target == image_id)
            if filters and "dangling" in filters and filters["dangling"] == ["true"] and tags:
                continue
            summaries.append({
                "Id": image_id, "ParentId": "", "RepoTags": tags,
                "RepoDigests": ["busybox@sha256:" + "d" * 64] if tags and digests else [],
                "Created": record["Created"], "Size": record["Size"], "SharedSize": -1,
                "VirtualSize": record["Size"], "Labels": {}, "Containers": -1,
            })
        # Oldest first on purpose: list_images_json (what the API answers with) sorts newest first.
        return sorted(summaries, key=lambda summary: summary["Created"])

    def list_images_json(self, *, all: bool = False, filters: dict[str, list[str]] | None = None,
                         digests: bool = False) -> bytes:
        summaries = self.list_images(all=all, filters=filters, digests=digests)
        summaries.sort(key=lambda summary: summary["Created"], reverse=True)
        return json.dumps(summaries, separators=(",", ":")).encode() + b"\n"

    def inspect_image(self, name: str) -> dict[str, Any]:
        self.calls.append(("inspect", name))
        image_id = self._resolve(name)
        record = self.images[image_id]
        return {"Id": image_id, "RepoTags": sorted(n for n, t in self.tags.items() if t == image_id),
                "RepoDigests": [], "Created": "2023-11-14T22:13:20Z", "Size": record["Size"],
                "Config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "Labels": None},
                "Os": "linux", "Architecture": "amd64",
                "RootFS": {"Type": "layers", "Layers": ["sha256:" + "c" * 64]}}

    def image_history(self, name: str) -> list[dict[str, Any]]:
        self.calls.append(("history", name))
        image_id = self._resolve(name)
        return [
            {"Id": image_id, "Created": NOW - 14 * 86400,
             "CreatedBy": '/bin/sh -c #(nop)  CMD ["sh"]', "Tags": ["busybox:latest"], "Size": 0,
             "Comment": ""},
            {"Id": "<missing>", "Created": NOW - 14 * 86400,
             "CreatedBy": "/bin/sh -c #(nop) ADD file:7e1e5b5d1a2c3b4a5f6e7d8c9b0a in / ",
             "Tags": None, "Size": 4261550, "Comment": ""},
        ]

    def tag_image(self, name: str, repository: str, tag: str) -> None:
        self.calls.append(("tag", (name, repository, tag)))
        image_id = self._resolve(name)
        if repository.lower() != repository:
            raise errdefs.InvalidArgument(f"invalid reference format: repository name ({repository}) must be lowercase")
        self.tags[f"{repository}:{tag or 'latest'}"] = image_id

    def remove_image(self, name: str, *, force: bool = False, prune: bool = True) -> list[dict[str, str]]:
        self.calls.append(("remove", (name, force, prune)))
        image_id = self._resolve(name)
        tags = [n for n, t in self.tags.items() if t == image_id]
        if len(tags) > 1 and name in self.images and not force:
            raise errdefs.Conflict(f"conflict: unable to delete {image_id[7:19]} (must be forced) - "
                                   "image is referenced in multiple repositories")
        if name in self.tags or name + ":latest" in self.tags:
            tag = name if name in self.tags else name + ":latest"
            del self.tags[tag]
            result = [{"Untagged": tag}]
            if image_id in self.tags.values():
                return result
        else:
            result = [{"Untagged": tag} for tag in tags]
            for tag in tags:
                del self.tags[tag]
        del self.images[image_id]
        return result + [{"Deleted": image_id}]

    def prune_images(self, *, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        self.calls.append(("prune", filters))
        dangling_only = (filters or {}).get("dangling", ["true"]) == ["true"]
        deleted = []
        reclaimed = 0
        for image_id in list(self.images):
            if dangling_only and image_id in self.tags.values():
                continue
            for tag in [n for n, t in self.tags.items() if t == image_id]:
                del self.tags[tag]
                deleted.append({"Untagged": tag})
            reclaimed += self.images.pop(image_id)["Size"]
            deleted.append({"Deleted": image_id})
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}


class DoubleSystem:
    def __init__(self, images: DoubleImages) -> None:
        self.images = images
        self.check_problems: list[dict[str, str]] = []
        self.repairable = True

    def info(self) -> dict[str, Any]:
        return {
            "ID": "LMNA:TEST", "Containers": 0, "ContainersRunning": 0, "ContainersPaused": 0,
            "ContainersStopped": 0, "Images": len(self.images.images), "Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"],
                             ["Native Overlay Diff", "true"]],
            "DockerRootDir": "/var/lib/lamina", "KernelVersion": "6.1.0-test", "OperatingSystem": "Debian GNU/Linux 12 (bookworm)",
            "OSType": "linux", "Architecture": "x86_64", "NCPU": 2, "MemTotal": 4105744384,
            "Name": "testhost", "ServerVersion": "0.1.0", "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs", "CgroupVersion": "2",
            "LaminaSkippedDrivers": [["fuse-overlayfs", "fuse-overlayfs binary not found"],
                                     ["btrfs", "/var/lib/lamina is not on btrfs"]],
            "Warnings": ["WARNING: no swap limit support"],
        }

    def disk_usage(self) -> dict[str, Any]:
        images = self.images.list_images()
        return {"LayersSize": 4262550, "Images": images, "Containers": [], "Volumes": [], "BuildCache": []}

    def check(self, *, repair: bool = False) -> dict[str, Any]:
        problems = list(self.check_problems)
        repaired = problems if repair and self.repairable else []
        if repair and self.repairable:
            self.check_problems = []
        return {"Problems": problems, "Repaired": repaired}


class DoubleServices:
    def __init__(self) -> None:
        self.images = DoubleImages()
        self.system = DoubleSystem(self.images)
