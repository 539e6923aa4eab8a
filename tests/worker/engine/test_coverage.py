"""The whole-work scan (Cooper et al. 2025) against its definition: every window scored alone
by the shared pass gives the same verdicts and log10 p_z; a tiny LM trained here on texts
planted with one repeated passage shows that passage, and only it, extractable; the screen's
recall; and memory that does not grow with the windows."""

from __future__ import annotations

import math
import tracemalloc
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from worker.engine import coverage
from worker.engine.coverage_scan import ScanSetup, scan_windows, screen_token_logprobs
from worker.engine.extraction import window_values
from worker.engine.schemes import GREEDY, Scheme
from worker.engine.scoring import ScoringRequest, score_sequences

VOCAB = 96
PASSAGE = 24
PREFIX, SUFFIX = 8, 8
SCHEMES = (GREEDY, Scheme(top_k=40), Scheme(top_p=0.9, temperature=0.8), Scheme())
THRESHOLD = 0.01
SPECIALS = [0]  # a BOS the windows start with, as a model with special tokens has


def _passage() -> list[int]:
    return torch.randint(1, VOCAB, (PASSAGE,), generator=torch.Generator().manual_seed(7)).tolist()


def _planted(n: int, at: Sequence[int], seed: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (n,), generator=generator).tolist()
    for start in at:
        ids[start : start + PASSAGE] = _passage()
    return ids


@pytest.fixture(scope="module")
def planted_lm() -> GPT2LMHeadModel:
    """Trained on 48-token texts, fresh random each step, each with the passage planted once:
    only the passage can be learned."""
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=VOCAB, n_positions=64, n_embd=64, n_layer=2, n_head=4,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    model = GPT2LMHeadModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    for step in range(150):
        batch = torch.tensor(
            [
                SPECIALS + _planted(48, [int(rng.integers(0, 48 - PASSAGE))], 1000 * step + row)
                for row in range(16)
            ]
        )
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


# The audited work: 1,200 random tokens with the passage planted twice.
PLANTED_AT = (300, 900)


@pytest.fixture(scope="module")
def work() -> list[int]:
    return _planted(1200, PLANTED_AT, seed=99)


def _alone(model: GPT2LMHeadModel, ids: list[int], offsets: range) -> list[dict]:
    """Each window scored on its own through the shared pass, read by extraction's reducer."""
    requests = [
        ScoringRequest(
            SPECIALS + ids[o : o + PREFIX + SUFFIX],
            detail_positions=range(len(SPECIALS) + PREFIX - 1, len(SPECIALS) + PREFIX + SUFFIX - 1),
        )
        for o in offsets
    ]
    stats = score_sequences(model, requests, "cpu", schemes=SCHEMES, batch_size=64)
    start = len(SPECIALS) + PREFIX - 1
    return [window_values(s, start, SUFFIX, [x.name for x in SCHEMES]) for s in stats]


def test_the_scan_matches_every_window_scored_alone(planted_lm, work) -> None:
    offsets = coverage.coverage_offsets(len(work), PREFIX, SUFFIX, stride=3)
    setup = ScanSetup.of(planted_lm, "cpu", SCHEMES)
    series = scan_windows(setup, work, SPECIALS, offsets, PREFIX, SUFFIX, batch_size=37)
    alone = _alone(planted_lm, work, offsets)
    assert series.offsets.tolist() == list(offsets)
    assert series.greedy.tolist() == [v["greedy_extracted"] for v in alone]
    assert series.fragile.tolist() == [v["fragile"] for v in alone]
    assert 0 < series.greedy.sum() < len(offsets)  # both verdicts occur
    for scheme in SCHEMES:
        scanned = series.log10_pz(scheme.name)
        expected = np.array(
            [
                -math.inf if v["log10_pz"][scheme.name] is None else v["log10_pz"][scheme.name]
                for v in alone
            ]
        )
        assert np.array_equal(np.isneginf(scanned), np.isneginf(expected))
        finite = np.isfinite(expected)
        assert finite.sum() > (100 if scheme == Scheme() else 0)
        assert np.abs(scanned[finite] - expected[finite]).max() < 1e-4
        verdicts = coverage.extractable(scanned, THRESHOLD)
        assert verdicts.tolist() == coverage.extractable(expected, THRESHOLD).tolist()


def test_the_planted_passage_and_only_it_is_extractable(planted_lm, work) -> None:
    offsets = coverage.coverage_offsets(len(work), PREFIX, SUFFIX, stride=1)
    series = scan_windows(
        ScanSetup.of(planted_lm, "cpu", SCHEMES), work, SPECIALS, offsets, PREFIX, SUFFIX
    )
    for name in ("greedy", "topk40_T1"):
        chosen = coverage.extractable(series.log10_pz(name), THRESHOLD)
        mask = coverage.covered_tokens(series.offsets, chosen, len(work), PREFIX, SUFFIX)
        inside = np.zeros(len(work), dtype=bool)
        for start in PLANTED_AT:
            inside[start : start + PASSAGE] = True
        assert not (mask & ~inside).any(), coverage.spans(mask)  # nothing outside the passage
        for start in PLANTED_AT:  # most of each copy: all but its first prefix and a token
            assert mask[start : start + PASSAGE].sum() >= PASSAGE - PREFIX - 2
        _, run = coverage.longest_run(mask)
        assert PASSAGE - PREFIX - 2 <= run <= PASSAGE
        top = coverage.top_windows(series.offsets, series.log10_pz(name), 2, PREFIX, SUFFIX)
        assert len(top) == 2
        for offset, _ in top:  # each top window's suffix lies in a planted copy
            suffix = range(offset + PREFIX, offset + PREFIX + SUFFIX)
            assert any(s <= suffix[0] and suffix[-1] < s + PASSAGE for s in PLANTED_AT), top


def test_the_screen_finds_what_the_exact_map_finds(planted_lm, work) -> None:
    """Recall of the screen against the exact map on this document: 1.0 (every extractable
    window was among the candidates) with a 2-decade margin, at a fraction of the windows."""
    setup = ScanSetup.of(planted_lm, "cpu", SCHEMES)
    offsets = coverage.coverage_offsets(len(work), PREFIX, SUFFIX, stride=1)
    exact = scan_windows(setup, work, SPECIALS, offsets, PREFIX, SUFFIX)
    tokens = screen_token_logprobs(setup, work, SPECIALS, context=64, overlap=PREFIX)
    for name in ("greedy", "topk40_T1"):
        screened = coverage.screen_window_log10(tokens[name], offsets, PREFIX, SUFFIX)
        candidates = screened >= math.log10(THRESHOLD) - 2.0
        truth = coverage.extractable(exact.log10_pz(name), THRESHOLD)
        assert truth.sum() >= 2 * 8  # at least 8 windows in each planted copy
        assert coverage.recall(candidates, truth) == 1.0
        assert candidates.sum() < 0.2 * len(offsets)


def test_the_screen_context_must_exceed_the_prefix(planted_lm) -> None:
    with pytest.raises(ValueError, match="exceed the prefix"):
        screen_token_logprobs(ScanSetup.of(planted_lm, "cpu", SCHEMES), [1] * 50, SPECIALS, 9, 8)


def _peak_bytes(model: GPT2LMHeadModel, n_tokens: int) -> tuple[int, int]:
    ids = _planted(n_tokens, (), seed=5)
    offsets = coverage.coverage_offsets(n_tokens, PREFIX, SUFFIX, stride=4)
    setup = ScanSetup.of(model, "cpu", (Scheme(top_k=40),))
    tracemalloc.start()
    series = scan_windows(setup, ids, SPECIALS, offsets, PREFIX, SUFFIX, batch_size=256)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, len(series.offsets)


def test_a_100k_token_work_holds_one_batch_and_the_series(planted_lm) -> None:
    """A 100,000-token work against an eighth of it: the traced peak grows by the series
    (offset, flags and log10 p_z: 18 bytes a window) and not by the windows' tokens and head
    columns (over 1 kB a window, were they all held)."""
    small, n_small = _peak_bytes(planted_lm, 12_500)
    large, n_large = _peak_bytes(planted_lm, 100_000)
    assert n_large == len(range(0, 100_000 - PREFIX - SUFFIX + 1, 4))
    assert (large - small) / (n_large - n_small) < 60


def test_spans_runs_and_top_windows() -> None:
    mask = np.array([0, 1, 1, 0, 1, 1, 1, 0], dtype=bool)
    assert coverage.spans(mask) == [(1, 3), (4, 7)]
    assert coverage.longest_run(mask) == (4, 3)
    assert coverage.longest_run(np.zeros(3, dtype=bool)) == (0, 0)
    offsets = np.array([0, 2, 4, 20])
    covered = coverage.covered_tokens(offsets, np.array([1, 0, 1, 0], bool), 30, 2, 3)
    assert coverage.spans(covered) == [(2, 5), (6, 9)]
    log10 = np.array([-1.0, -0.5, -math.inf, -3.0])
    assert coverage.top_windows(offsets, log10, 3, 2, 3) == [(2, -0.5), (20, -3.0)]
    assert list(coverage.coverage_offsets(10, 2, 3, 2)) == [0, 2, 4]
    assert len(coverage.coverage_offsets(4, 2, 3, 2)) == 0
