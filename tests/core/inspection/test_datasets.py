from __future__ import annotations

import io

import pytest

from core.inspection.datasets import DatasetError, inspect_jsonl, iter_records, open_dataset


def test_records_skip_blank_lines_but_keep_physical_line_numbers(tmp_path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a"}\n\n{"id": "b", "text": "b"}\n{"text": "c"}\n')
    records = list(iter_records(path))
    assert [(r.index, r.line_no, r.sample_id) for r in records] == [
        (0, 1, "0"),
        (1, 3, "b"),
        (2, 4, "2"),
    ]
    assert [r.index for r in iter_records(path, 1, 2)] == [1]


def test_a_bad_line_is_reported_by_number(tmp_path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"\n')
    with pytest.raises(DatasetError, match="line 2"):
        list(iter_records(path))
    with pytest.raises(DatasetError, match="line 1: expected a JSON object"):
        inspect_jsonl(io.BytesIO(b"[1]\n"), validate_all=True)


def test_inspect_counts_and_hashes() -> None:
    info = inspect_jsonl(
        io.BytesIO(b'{"text": "a", "member": true}\n\n{"text": "b"}\n'), validate_all=False
    )
    assert info.n_records == 2 and info.fields == ["text", "member"]
    assert len(info.sha256) == 64


def test_dataset_uris_stay_inside_their_roots(tmp_path) -> None:
    root, uploads = tmp_path / "data", tmp_path / "uploads"
    root.mkdir()
    uploads.mkdir()
    (tmp_path / "secret.jsonl").write_text("{}\n")
    for uri, match in [
        (f"path:{tmp_path / 'secret.jsonl'}", "outside"),
        ("dataset:ds_../../secret", "unsupported"),
        ("s3://bucket/x", "unsupported"),
    ]:
        with pytest.raises(FileNotFoundError, match=match), open_dataset(uri, uploads, [root]):
            pass


def test_a_byte_order_mark_is_not_a_fault() -> None:
    info = inspect_jsonl(io.BytesIO(b'\xef\xbb\xbf{"text": "a"}\n'), validate_all=True)
    assert info.n_records == 1 and info.fields == ["text"]
