"""Which model a URI is a version of: the key of the model page and the trend across versions.

`mlflow:models:/<name>/<version>` is version <version> of `mlflow:models:/<name>` (and
`mlflow:models:/<name>@<alias>` its version `@<alias>`);
`hf:<repo>@<revision>` is revision <revision> of `hf:<repo>`;
`wandb:<path>:v<N>` is version v<N> of `wandb:<path>`; a `path:` directory is its own family
unless the audit's labels name one (`model_family`, `model_version`), which always win.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MLFLOW_PREFIX = "mlflow:models:/"


def family_and_version(model_uri: str, labels: Mapping[str, Any]) -> tuple[str, str | None]:
    """(family, version or None).

    >>> family_and_version("mlflow:models:/fraud-lm/7", {})
    ('mlflow:models:/fraud-lm', '7')
    >>> family_and_version("hf:org/lm@abc123", {})
    ('hf:org/lm', 'abc123')
    >>> family_and_version("wandb:acme/wandb-registry-model/lm:v3", {})
    ('wandb:acme/wandb-registry-model/lm', 'v3')
    >>> family_and_version("path:/models/lm-v2", {"model_family": "lm", "model_version": "2"})
    ('lm', '2')
    """
    family, version = model_uri, None
    if model_uri.startswith(MLFLOW_PREFIX):
        rest = model_uri[len(MLFLOW_PREFIX) :]
        name, at, alias = rest.rpartition("@")
        if not at:  # models:/<name>/<version>: the version is the last segment
            name, _, version_part = rest.rpartition("/")
            alias = ""
        if name and (at or version_part):
            family, version = MLFLOW_PREFIX + name, f"@{alias}" if at else version_part
    elif model_uri.startswith("hf:") and "@" in model_uri:
        family, _, version = model_uri.rpartition("@")
    elif model_uri.startswith("wandb:") and ":" in model_uri[len("wandb:") :]:
        family, _, version = model_uri.rpartition(":")
    label_family, label_version = labels.get("model_family"), labels.get("model_version")
    if isinstance(label_family, str) and label_family:
        family = label_family
    if label_version is not None and str(label_version):
        version = str(label_version)
    return family, version
