from __future__ import annotations

import pytest

import tfship.errors as errors
from tfship.errors import Code, ServingError, error_for_code


def test_public_names_are_pinned() -> None:
    assert set(errors.__all__) == {
        name for name in dir(errors)
        if not name.startswith("_") and (isinstance(getattr(errors, name), type) or callable(getattr(errors, name)))
        and getattr(getattr(errors, name), "__module__", "") == errors.__name__
    } | {"HTTP_STATUS"}


@pytest.mark.parametrize("code", [c for c in Code if c != Code.OK])
def test_every_code_has_its_own_class_and_http_status(code: Code) -> None:
    err = error_for_code(code, "boom", model="m", version=3)
    assert isinstance(err, ServingError)
    assert err.code == code
    assert err.http_status == errors.HTTP_STATUS[code]
    assert (err.model, err.version) == ("m", 3)


def test_http_statuses_match_tf_serving() -> None:
    assert error_for_code(5, "x").http_status == 404
    assert error_for_code(9, "x").http_status == 400
    assert error_for_code(8, "x").http_status == 429
    assert errors.code_for_http_status(404) == Code.NOT_FOUND


def test_hint_is_part_of_the_message() -> None:
    err = errors.NotFoundError("Servable not found", hint="available versions: 1, 2")
    assert "available versions: 1, 2" in str(err)
    assert err.message == "Servable not found"


def test_swap_error_carries_its_record() -> None:
    assert errors.SwapError("refused before anything changed").record is None
    record = object()
    err = errors.SwapError("rolled back", record=record)
    assert err.record is record and str(err) == "rolled back"


def test_docker_unavailable_is_a_docker_error() -> None:
    assert issubclass(errors.DockerUnavailableError, errors.DockerError)
