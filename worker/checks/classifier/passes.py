"""What the classifier checks of one shard share: the loaded model, its records as inputs and
labels, and the work done once per shard (the held-out fine-tuned copy, the whole dataset's
features for the separation bound).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.inspection.datasets import Record, iter_records, require_input, require_label
from core.inspection.errors import ModelError
from worker.checks.classifier.kinds import read_label
from worker.checks.shard_pass import ShardInput, ShardPass, loaded_info
from worker.engine.classifier_ops import FineTuneResult, finetune_copy, predict_probs
from worker.loaders.classifiers import LoadedClassifier

HELDOUT = "heldout"


@dataclass(frozen=True)
class LabelledRecord:
    index: int
    sample_id: str
    input: Any  # a text, or a list of numbers
    label: int | None
    data: dict[str, Any]
    line_no: int

    @property
    def split(self) -> str | None:
        value = self.data.get("split")
        return value if isinstance(value, str) else None


def labelled(record: Record, input_kind: str, need_label: bool) -> LabelledRecord:
    label = require_label(record) if need_label else read_label(record)
    return LabelledRecord(
        record.index,
        record.sample_id,
        require_input(record, input_kind),
        label,
        record.data,
        record.line_no,
    )


@dataclass
class ClassifierContext:
    model: LoadedClassifier
    dataset: Path
    batch_size: int
    n_records: int = 0  # the whole dataset's, not just this shard's
    seed: int = 0
    load_model: Callable[[str], LoadedClassifier] | None = None
    _finetuned: dict[tuple[Any, ...], FineTuneResult] = field(default_factory=dict)

    def batches(
        self, records: Sequence[LabelledRecord], model: LoadedClassifier | None = None
    ) -> list[tuple[list[int], Any]]:
        """(positions, model inputs) per batch; texts go in order of length so a batch pads
        little (half the time of file order on real sentences), features in file order."""
        model = model or self.model
        positions = list(range(len(records)))
        if model.input_kind == "text":
            positions.sort(key=lambda i: len(records[i].input))
        return [
            (chunk, model.batch([records[i].input for i in chunk]))
            for chunk in (
                positions[start : start + self.batch_size]
                for start in range(0, len(positions), self.batch_size)
            )
        ]

    def probs(self, records: Sequence[LabelledRecord], module: torch.nn.Module | None = None):
        """Softmax outputs (examples, classes) of the model, or of a copy of it, in the
        records' order."""
        return self._in_order(records, self.model, module or self.model.module)

    def _in_order(
        self, records: Sequence[LabelledRecord], model: LoadedClassifier, module: torch.nn.Module
    ) -> np.ndarray:
        batches = self.batches(records, model)
        found = predict_probs(module, model.logits, [inputs for _, inputs in batches])
        ordered = np.empty_like(found)
        ordered[[i for chunk, _ in batches for i in chunk]] = found
        return ordered

    def probs_of(self, uri: str, records: Sequence[LabelledRecord]) -> np.ndarray:
        """Softmax outputs of another model named in the params (same inputs)."""
        if self.load_model is None:
            raise ValueError("this context cannot load other models")
        other = self.load_model(uri)
        if other.input_kind != self.model.input_kind or other.n_classes != self.model.n_classes:
            raise ModelError(
                f"{uri} does not take the same inputs and classes as the audited model"
            )
        return self._in_order(records, other, other.module)

    @cached_property
    def all_records(self) -> list[LabelledRecord]:
        """Every record of the dataset (a shard's checks may need the others)."""
        return [
            labelled(record, self.model.input_kind, need_label=False)
            for record in iter_records(self.dataset)
        ]

    def heldout_copy(self, lr: float, epochs: int, patience: int) -> FineTuneResult | None:
        """The model fine-tuned on the dataset's `split: heldout` records; None without any.

        Seeded and computed once per shard, so every shard of an audit fine-tunes the same
        copy (bit for bit on one kind of device)."""
        key = (lr, epochs, patience, self.seed)
        if key not in self._finetuned:
            heldout = [r for r in self.all_records if r.split == HELDOUT and r.label is not None]
            if not heldout:
                return None
            torch.manual_seed(self.seed)
            batches = [
                (inputs, torch.tensor([heldout[i].label for i in chunk], device=self.model.device))
                for chunk, inputs in self.batches(heldout)
            ]
            self._finetuned[key] = finetune_copy(
                self.model.module,
                self.model.logits,
                batches,
                lr=lr,
                max_epochs=epochs,
                patience=patience,
                seed=self.seed,
            )
        return self._finetuned[key]

    @cached_property
    def all_features(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(x, y, ids) of every labelled record, features flattened."""
        rows = [r for r in self.all_records if r.label is not None]
        x = np.asarray([np.ravel(np.asarray(r.input, dtype=np.float64)) for r in rows])
        return x, np.asarray([r.label for r in rows]), [r.sample_id for r in rows]


def open_pass(shard: ShardInput) -> ShardPass:
    """The classifier and unlearning kinds read the model through the classifier interface,
    chunk by chunk; a causal LM is read through it too (`diversity`, `capacity`)."""
    classifier = shard.target.classifier()
    need_label = any("label" in kind.required_fields for kind, _ in shard.checks)
    inputs = [labelled(r, classifier.input_kind, need_label) for r in shard.records]
    context = ClassifierContext(
        classifier,
        shard.dataset,
        shard.batch_size,
        n_records=shard.n_records,
        load_model=shard.access.classifier,
    )
    info = loaded_info(classifier)
    info["model_facts"] = {
        kind.name: kind.model_facts(context, params)
        for kind, params in shard.checks
        if kind.model_facts is not None
    }

    def compute(batch: Sequence[int]) -> tuple[list[list[dict[str, Any]]], int]:
        chunk = [inputs[i] for i in batch]
        return [kind.compute(context, chunk, params) for kind, params in shard.checks], 0

    return ShardPass(compute, info)
