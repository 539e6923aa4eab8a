"""Real classifiers trained in the test, saved as memaudit loads them, with their datasets."""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from worker.engine.membership import roc_curve
from worker.loaders.builtin_nets import build, save_builtin


def flagged_auroc(scores: list[float], flagged: list[bool]) -> float:
    """How well a score ranks the flagged records (flipped labels) first: the membership ROC's
    AUROC with the flagged records as members."""
    return roc_curve(
        [s for s, f in zip(scores, flagged, strict=True) if f],
        [s for s, f in zip(scores, flagged, strict=True) if not f],
    ).auc


@dataclass(frozen=True)
class NoisyDigits:
    model_dir: Path
    dataset: Path  # .npz: x, y, split (train | heldout), id, flipped
    flipped_ids: frozenset[str]
    train_accuracy: float


def noisy_digits(
    root: Path, flip_fraction: float = 0.15, seed: int = 0, history: bool = False
) -> NoisyDigits:
    """scikit-learn's digits with 15% of the training labels flipped to another class, and an
    MLP trained on them until it fits most of the training set (seconds on a CPU).

    With `history`, the records also carry what the learning-event and Feldman proxies read:
    the softmax each training example got in its mini-batch every epoch (`epoch_probs`), and
    the membership and correctness of 16 RBF SVMs (which memorize) trained on random 70% subsets
    (`subset_in`, `subset_correct`)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    train, heldout = order[:1300], order[1300:]
    labels = y.copy()
    flip = rng.choice(train, size=int(flip_fraction * len(train)), replace=False)
    labels[flip] = (labels[flip] + rng.integers(1, 10, size=len(flip))) % 10
    architecture = {"name": "mlp", "input_dim": 64, "hidden": [128], "n_classes": 10}
    torch.manual_seed(seed)
    net = build(architecture)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x[train]), torch.from_numpy(labels[train]).long()
    logged = np.zeros((len(x), 30, 10), dtype=np.float32)
    for epoch in range(30):
        permutation = torch.randperm(len(xt))
        for start in range(0, len(xt), 64):
            batch = permutation[start : start + 64]
            optimizer.zero_grad()
            logits = net(xt[batch])
            logged[train[batch.numpy()], epoch] = torch.softmax(logits, 1).detach().numpy()
            torch.nn.functional.cross_entropy(logits, yt[batch]).backward()
            optimizer.step()
    accuracy = float((net(xt).argmax(1) == yt).float().mean())
    model_dir = save_builtin(root / "models" / "digits-mlp", architecture, net)
    split = np.array(["train"] * len(x), dtype="<U8")
    split[heldout] = "heldout"
    flipped = np.zeros(len(x), dtype=bool)
    flipped[flip] = True
    ids = np.array([f"digit-{i}" for i in range(len(x))])
    dataset = root / "data" / "digits.npz"
    dataset.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"x": x, "y": labels, "split": split, "flipped": flipped, "id": ids}
    if history:
        arrays["epoch_probs"] = logged
        arrays["subset_in"], arrays["subset_correct"] = _subset_models(x, labels, train, rng)
    np.savez(dataset, **arrays)
    return NoisyDigits(model_dir, dataset, frozenset(ids[flip]), accuracy)


def _train(architecture: dict, x: np.ndarray, y: np.ndarray, epochs: int, seed: int, net=None):
    torch.manual_seed(seed)
    net = net if net is not None else build(architecture)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    for _ in range(epochs):
        permutation = torch.randperm(len(xt))
        for start in range(0, len(xt), 64):
            batch = permutation[start : start + 64]
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[batch]), yt[batch]).backward()
            optimizer.step()
    return net.eval()


@dataclass(frozen=True)
class UnlearningModels:
    original: Path  # trained on forget + retain
    retrained: Path  # trained on retain only, same recipe
    unlearned: Path  # the original fine-tuned on retain for a few epochs
    dataset: Path  # .npz with split forget | retain | test
    nets: dict  # name -> module, for the test's own arithmetic


def unlearning_models(root: Path, seed: int = 0) -> UnlearningModels:
    """Digits whose forget set is 130 training records with wrong labels: the original model
    memorizes them, the retrained one never saw them, the unlearned one is in between."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    forget, retain, test = order[:130], order[130:1300], order[1300:]
    labels = y.copy()
    labels[forget] = (labels[forget] + rng.integers(1, 10, size=len(forget))) % 10
    architecture = {"name": "mlp", "input_dim": 64, "hidden": [128], "n_classes": 10}
    train = np.concatenate([forget, retain])
    original = _train(architecture, x[train], labels[train], 100, seed)
    retrained = _train(architecture, x[retain], labels[retain], 100, seed)
    import copy

    unlearned = _train(
        architecture, x[retain], labels[retain], 3, seed + 1, copy.deepcopy(original)
    )
    nets = {"original": original, "retrained": retrained, "unlearned": unlearned}
    dirs = {
        name: save_builtin(root / "models" / name, architecture, net) for name, net in nets.items()
    }
    split = np.array(["retain"] * len(x), dtype="<U8")
    split[forget], split[test] = "forget", "test"
    dataset = root / "data" / "unlearning.npz"
    dataset.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        dataset, x=x, y=labels, split=split, id=np.array([f"digit-{i}" for i in range(len(x))])
    )
    return UnlearningModels(dirs["original"], dirs["retrained"], dirs["unlearned"], dataset, nets)


def _subset_models(
    x: np.ndarray, labels: np.ndarray, train: np.ndarray, rng, m: int = 16, r: float = 0.7
) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.svm import SVC

    inside = np.zeros((len(x), m), dtype=np.int8)
    correct = np.zeros((len(x), m), dtype=np.int8)
    for k in range(m):
        chosen = rng.choice(train, size=int(r * len(train)), replace=False)
        model = SVC(C=100.0, gamma="scale").fit(x[chosen], labels[chosen])
        inside[chosen, k] = 1
        correct[train, k] = model.predict(x[train]) == labels[train]
    return inside, correct


def circles_model(root: Path, variant: str, seed: int, epochs: int = 200) -> tuple[Path, Path]:
    """METRICS.md §4 fact 6: concentric circles with a third input that is noise (clean), the
    label itself (spurious), or noise with shuffled labels (shuffled); a 2-layer MLP."""
    from sklearn.datasets import make_circles

    x, y = make_circles(n_samples=1000, noise=0.1, factor=0.5, random_state=seed)
    rng = np.random.default_rng(seed)
    extra = rng.normal(size=(len(x), 1))
    if variant == "spurious":
        extra = (2 * y - 1)[:, None].astype(float)
    labels = rng.permutation(y) if variant == "shuffled" else y
    features = np.hstack([x, extra]).astype(np.float32)
    architecture = {"name": "mlp", "input_dim": 3, "hidden": [128, 128], "n_classes": 2}
    torch.manual_seed(seed)
    net = build(architecture)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(features[:700]), torch.from_numpy(labels[:700]).long()
    for _ in range(epochs):
        permutation = torch.randperm(700)
        for start in range(0, 700, 64):
            batch = permutation[start : start + 64]
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[batch]), yt[batch]).backward()
            optimizer.step()
    model_dir = save_builtin(root / f"circles-{variant}-{seed}", architecture, net)
    dataset = model_dir / "validation.npz"
    np.savez(dataset, x=features[700:], y=labels[700:])
    return model_dir, dataset


DOC_MODULES = (
    "argparse",
    "asyncio",
    "collections",
    "csv",
    "datetime",
    "decimal",
    "email.message",
    "functools",
    "http.client",
    "inspect",
    "json",
    "logging",
    "os",
    "pathlib",
    "re",
    "shutil",
    "socket",
    "sqlite3",
    "statistics",
    "string",
    "subprocess",
    "tarfile",
    "threading",
    "unittest",
    "urllib.request",
    "uuid",
    "zipfile",
    "xml.etree.ElementTree",
    "textwrap",
    "tempfile",
    "heapq",
    "random",
    "fractions",
    "difflib",
    "calendar",
    "configparser",
    "contextlib",
    "dataclasses",
    "enum",
    "gzip",
    "hashlib",
    "imaplib",
    "ipaddress",
    "locale",
    "mailbox",
    "pprint",
    "queue",
    "sched",
    "selectors",
    "smtplib",
    "ssl",
    "tokenize",
    "traceback",
    "wave",
    "zipapp",
    "pdb",
    "doctest",
    "optparse",
    "ftplib",
    "poplib",
    "codecs",
    "io",
    "pickletools",
    "bdb",
    "cmd",
    "shlex",
    "trace",
    "timeit",
    "urllib.parse",
    "email.utils",
    "plistlib",
    "netrc",
    "gettext",
    "platform",
    "sysconfig",
    "ast",
    "dis",
)


def real_sentences(n: int) -> list[str]:
    """n distinct English sentences written by people: the standard library's docstrings."""
    found: list[str] = []
    seen: set[str] = set()
    for name in DOC_MODULES:
        module = importlib.import_module(name)
        docs = [module.__doc__]
        for _, obj in sorted(vars(module).items()):
            if inspect.isclass(obj) or inspect.isfunction(obj):
                docs.append(obj.__doc__)
                if inspect.isclass(obj):
                    docs += [
                        m.__doc__ for _, m in sorted(vars(obj).items()) if inspect.isfunction(m)
                    ]
        for doc in docs:
            if not isinstance(doc, str):
                continue
            for sentence in re.split(r"(?<=[.!?])\s+", " ".join(doc.split())):
                words = sentence.split()
                fits = 40 <= len(sentence) <= 240 and len(words) >= 6 and sentence[0].isupper()
                if fits and sentence not in seen:
                    seen.add(sentence)
                    found.append(sentence)
                    if len(found) == n:
                        return found
    raise AssertionError(f"only {len(found)} sentences in the docstrings")
