"""What one audit may load, and the audited model in the form each family reads it.

`Access` holds the team's grants (checked again here, at load) and the dataset files the shard
keeps open; `Target` loads the audited model through the loader of its model kind, each
cached per worker process.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.check_kinds import NO_MODEL
from core.config import Settings
from core.db import Database
from core.inspection import chat_endpoints
from core.inspection.datasets import open_dataset, uploaded_dataset_path
from core.inspection.models import ModelSpec
from core.tenancy import Grants, NotGranted, check_model_grant
from core.wandb_client import wandb_client
from worker import shard_store
from worker.loaders.classifiers import LoadedClassifier, as_classifier, cached_classifier
from worker.loaders.diffusion_models import LoadedDiffusion, cached_pipeline
from worker.loaders.materialize import materialize
from worker.loaders.models import LoadedModel, cached_causal_lm


class PermanentError(ValueError):
    """Retrying cannot help (bad data, unusable model, impossible params)."""


@dataclass(frozen=True)
class Access:
    """What one audit may read: its team's grants and uploads, checked again here at load;
    the dataset files it opens stay pinned in `files` until the shard is done."""

    settings: Settings
    db: Database
    audit: Any
    grants: Grants
    files: ExitStack

    def spec(self, uri: str) -> ModelSpec:
        settings = self.settings
        try:
            check_model_grant(self.grants, uri)
        except NotGranted as exc:
            raise PermanentError(str(exc)) from None
        if chat_endpoints.is_endpoint(uri):  # checked against this worker's allow-list too
            chat_endpoints.parse_uri(uri, settings.chat_hosts)
            return ModelSpec(uri=uri, path=Path(), kind="chat_endpoint", format="endpoint")
        return materialize(
            uri,
            self.grants.model_roots(settings),
            mlflow_tracking_uri=settings.mlflow_tracking_uri,
            cache_root=settings.model_cache_dir,
            hf_cache_dir=settings.hf_cache_dir,
            hf_endpoint=settings.hf_endpoint,
            hf_token=settings.hf_token,
            allow_pickle=settings.allow_pickle_weights,
            allow_torchscript=settings.allow_torchscript,
            rules=settings.file_rules,
            wandb_client=lambda: wandb_client(settings),
        )

    def open_dataset(self, uri: str) -> Path:
        """A dataset file, held open (pinned) until the shard is done."""
        settings = self.settings

        def upload(dataset_id: str) -> Path | None:
            sha256 = shard_store.upload_sha256(self.db, self.audit, dataset_id)
            return uploaded_dataset_path(settings.datasets_dir, sha256) if sha256 else None

        roots = self.grants.data_roots(settings)
        return self.files.enter_context(open_dataset(uri, upload, roots, settings.file_rules))

    def causal_lm(self, uri: str) -> LoadedModel:
        return Target(self.spec(uri), self).causal_lm()

    def classifier(self, uri: str) -> LoadedClassifier:
        return cached_classifier(self.spec(uri))

    def chat(self, spec: ModelSpec) -> chat_endpoints.EndpointChat:
        settings = self.settings
        endpoint = chat_endpoints.parse_uri(spec.uri, settings.chat_hosts)
        return chat_endpoints.EndpointChat(
            endpoint,
            settings.chat_endpoint_api_key,
            timeout=settings.chat_endpoint_timeout_seconds,
        )


@dataclass(frozen=True)
class Target:
    """The audited model, loaded the way a family reads it; `held` is a model the caller
    already has in memory (a local audit). A dataset audit has neither: its kind is
    NO_MODEL, and only kinds that run without a model accept it."""

    spec: ModelSpec | None
    access: Any
    held: Any = None

    @property
    def kind(self) -> str:
        if isinstance(self.held, LoadedModel):
            return "causal_lm"
        if isinstance(self.held, LoadedClassifier):
            return self.held.spec.kind if self.held.spec is not None else "classifier"
        if self.spec is None:
            return NO_MODEL
        return self.spec.kind

    def causal_lm(self) -> LoadedModel:
        if isinstance(self.held, LoadedModel):
            return self.held
        if self.kind != "causal_lm":
            raise PermanentError(f"model kind {self.kind} is not supported by these checks")
        return cached_causal_lm(self.model_spec())

    def classifier(self) -> LoadedClassifier:
        """A classifier or encoder; a causal LM read through the classifier interface."""
        if isinstance(self.held, LoadedClassifier):
            return self.held
        if self.kind == "causal_lm":
            return as_classifier(self.causal_lm())
        return cached_classifier(self.model_spec())

    def pipeline(self) -> LoadedDiffusion:
        return cached_pipeline(self.model_spec())

    def model_spec(self) -> ModelSpec:
        """The audited model's files; a dataset audit has none to give."""
        spec = self.spec if self.held is None else getattr(self.held, "spec", None)
        if spec is None:
            raise PermanentError("this audit names no model, and these checks need one")
        return spec

    def chat(self) -> chat_endpoints.EndpointChat:
        return self.access.chat(self.spec)
