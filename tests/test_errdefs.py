"""The kinds' names on the wire (the monitor's and the init's error answers)."""

from __future__ import annotations

from lamina import errdefs


def test_each_kind_is_its_class_name_in_snake_case() -> None:
    kinds = {name: getattr(errdefs, name).kind for name in errdefs.__all__}
    assert kinds == {
        "LaminaError": "unknown", "NotFound": "not_found", "AlreadyExists": "already_exists",
        "InvalidArgument": "invalid_argument", "Conflict": "conflict",
        "FailedPrecondition": "failed_precondition", "Unavailable": "unavailable", "DataLoss": "data_loss",
        "NotImplemented": "not_implemented", "System": "system", "Cancelled": "cancelled",
        "Unauthorized": "unauthorized", "Forbidden": "forbidden",
    }


def test_a_subclass_defined_elsewhere_is_of_its_base_kind() -> None:
    class StartFailed(errdefs.InvalidArgument):
        pass

    assert StartFailed.kind == "invalid_argument"
    assert StartFailed("x").kind == "invalid_argument"
