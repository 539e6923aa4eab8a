"""Fixtures shared by the API tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def body(tiny_lm) -> dict:
    """A valid audit submission: the demo model on its canary file, one loss check."""
    return {
        "model": {"uri": f"path:{tiny_lm.model_dir}"},
        "dataset": {"uri": f"path:{tiny_lm.dataset_path}"},
        "checks": [{"kind": "loss", "params": {}}],
    }
