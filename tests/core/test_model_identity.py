"""Which model family and version an audit belongs to."""

from __future__ import annotations

import doctest

import pytest

from core import model_identity
from core.model_identity import family_and_version


def test_the_documented_examples_hold() -> None:
    assert doctest.testmod(model_identity).failed == 0


@pytest.mark.parametrize(
    ("uri", "labels", "expected"),
    [
        ("mlflow:models:/a/b/3", {}, ("mlflow:models:/a/b", "3")),
        ("mlflow:models:/fraud", {}, ("mlflow:models:/fraud", None)),
        ("mlflow:models:/fraud@champion", {}, ("mlflow:models:/fraud", "@champion")),
        ("hf:org/lm", {}, ("hf:org/lm", None)),
        ("path:/m", {"model_version": "7"}, ("path:/m", "7")),
        ("path:/m", {"model_family": ""}, ("path:/m", None)),
    ],
)
def test_family_and_version(uri: str, labels: dict, expected: tuple) -> None:
    assert family_and_version(uri, labels) == expected
