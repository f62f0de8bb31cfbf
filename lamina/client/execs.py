"""Execs: create, start (hijacked unless detached), inspect, resize."""

from __future__ import annotations

from lamina.client.calls import UPGRADE, BaseClient, attachment, chunks, json_body

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

    from lamina.client.stdio import Attachment

__all__ = ["ExecMixin"]


class ExecMixin(BaseClient):
    def exec_create(self, id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", f"/containers/{id}/exec", **json_body(body))

    def exec_start(self, exec_id: str, *, detach: bool = False, tty: bool = False,
                   console_size: tuple[int, int] | None = None) -> Attachment | None:
        body: dict[str, Any] = {"Detach": detach, "Tty": tty}
        if console_size is not None:
            body["ConsoleSize"] = list(console_size)
        arguments = json_body(body)
        if not detach:
            arguments["headers"].update(UPGRADE)
        response = self._send("POST", f"/exec/{exec_id}/start", **arguments)
        if detach:
            b"".join(chunks(response))
            return None
        return attachment(response, self.api_version, tty=tty)

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        return self._json("GET", f"/exec/{exec_id}/json")

    def exec_resize(self, exec_id: str, *, height: int, width: int) -> None:
        self._empty("POST", f"/exec/{exec_id}/resize", query={"h": [str(height)], "w": [str(width)]})
