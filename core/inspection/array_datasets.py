"""`.npz` datasets: arrays with one row per record, read without unpickling anything.

`x` (or `features`) holds the inputs and `y` (or `label`) the labels; every other array whose
first dimension matches becomes a field of the same name (`id`, `split`, `member`,
`epoch_probs`, `subset_in`, `subset_correct`, ...). Object arrays need pickle and are refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ALIASES = {"x": "features", "y": "label"}


class ArrayDatasetError(ValueError):
    pass


def _arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {ALIASES.get(name, name): archive[name] for name in archive.files}
    except ValueError as exc:  # numpy refuses object arrays without allow_pickle
        raise ArrayDatasetError(f"{path.name}: {exc} (object arrays are refused)") from None
    except (OSError, EOFError) as exc:
        raise ArrayDatasetError(f"{path.name} is not a readable .npz archive: {exc}") from None
    if "features" not in arrays:
        raise ArrayDatasetError(f"{path.name} has no array 'x' (or 'features')")
    n = len(arrays["features"])
    uneven = sorted(name for name, a in arrays.items() if a.ndim == 0 or len(a) != n)
    if uneven:
        raise ArrayDatasetError(f"{path.name}: arrays {uneven} do not have {n} rows like 'x'")
    return arrays


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def inspect_npz(path: Path) -> tuple[str, int, int, list[str]]:
    """(sha256, records, bytes, fields) of an archive."""
    arrays = _arrays(path)
    with path.open("rb") as stream:
        digest = hashlib.file_digest(stream, "sha256")
    return digest.hexdigest(), len(arrays["features"]), path.stat().st_size, list(arrays)


def iter_npz(path: Path, start: int, stop: int | None) -> Iterator[tuple[int, dict[str, Any]]]:
    arrays = _arrays(path)
    end = len(arrays["features"]) if stop is None else min(stop, len(arrays["features"]))
    for index in range(start, end):
        yield index, {name: _plain(array[index]) for name, array in arrays.items()}
