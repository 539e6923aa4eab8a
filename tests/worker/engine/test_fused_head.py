"""The fused head kernel (Triton interpreter on CPU) against today's PyTorch path.

Reference: `head_stats.final_logits` + `logprob_and_moments` + `detail_stats` +
`sampling.scheme_logprobs`. Tolerances: float32 inputs, 1e-5 abs on log-probabilities,
logsumexp, mu, sigma, margins and scheme log-probabilities; float16 inputs, against the float16
PyTorch head (both round the logits to float16), 1e-3 abs. On exactly representable data
(entries k/64, so every dot product is exact in float32) ranks, ties, ids and flags must agree
exactly, which is what lets the tests plant exact ties. The interpreter cannot run bf16 dots.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from worker.engine.fused_head import Tiles, fused_head_available, fused_head_stats
from worker.engine.head_stats import detail_stats, final_logits, logprob_and_moments
from worker.engine.sampling import scheme_logprobs
from worker.engine.schemes import Scheme

pytest.importorskip("triton")

# Triton picks its interpreter when it is imported, and other test modules import it (through
# transformers) without: the kernel tests run in a child pytest that has the variable from the
# start, so no other test sees it.
IN_INTERPRETER = os.environ.get("TRITON_INTERPRET") == "1"
interpreted = pytest.mark.skipif(
    not IN_INTERPRETER, reason="run under TRITON_INTERPRET=1 by test_kernels_in_interpreter"
)


def test_kernels_in_interpreter() -> None:
    if IN_INTERPRETER:
        pytest.skip("this process runs the kernel tests itself")
    child = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
        env={**os.environ, "TRITON_INTERPRET": "1"},
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert child.returncode == 0, child.stdout[-8000:] + child.stderr[-2000:]
    assert " passed" in child.stdout and "skipped" in child.stdout  # ran, not skipped


H = 64
N = 40  # three blocks of 16 positions, the last one partial
SMALL = Tiles(block_n=16, block_v=64, block_h=32, vocab_splits=3)  # partial tiles and splits
SCHEMES = [Scheme(1.0, 1), Scheme(0.7, 5), Scheme(1.0, 40), Scheme(0.7, 40)]  # K = 64
# The interpreter's bitonic sorts are slow, and a 64-value buffer costs ~1 s per tile: the
# 16-tile vocabulary gets the 8-value buffer of k <= 5.
SMALL_K = [Scheme(1.0, 1), Scheme(0.7, 5), Scheme(1.0, 5)]
# Planted rows (all in the last, partial row block).
CROSS_SPLIT, CROSS_SPLIT_LOW, SAME_TILE, TARGET_TIED, KTH_TIED, MAX_TIED = range(32, 38)


def _head(weight: torch.Tensor, scale: float | None, softcap: float | None) -> GPT2LMHeadModel:
    """A real GPT-2 whose output head is `weight`, with the post-processing config set."""
    vocab, hidden = weight.shape
    model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=hidden, n_layer=1, n_head=2))
    model.config.logit_scale = scale
    model.config.final_logit_softcapping = softcap
    with torch.no_grad():
        model.lm_head.weight.copy_(weight.float())
    return model.eval()


def _exact_grid(*shape: int, gen: torch.Generator, nonzero: bool = False) -> torch.Tensor:
    """Entries k/64, |k| <= 64: exact in float16 and their products' sums exact in float32."""
    k = torch.randint(1 if nonzero else -64, 65, shape, generator=gen).float()
    if nonzero:
        k = k * (torch.randint(0, 2, shape, generator=gen) * 2 - 1)
    return k / 64


def planted(vocab: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hidden states, head and targets with exact ties planted at known rows and ids."""
    gen = torch.Generator().manual_seed(seed)
    hidden = _exact_grid(N, H, gen=gen, nonzero=True)
    weight = _exact_grid(vocab, H, gen=gen)
    targets = torch.randint(0, vocab, (N,), generator=gen)
    hidden[CROSS_SPLIT_LOW] = hidden[CROSS_SPLIT]

    def top_vector(row: int) -> torch.Tensor:  # its logit, Σ|h|, beats every other row's
        return hidden[row].sign()

    # Arg-max tied at five ids: two in one tile, one in the next, the others in later splits,
    # past tiles of a lower max. Whichever is the target, the best other is the lowest other id.
    weight[[10, 40, 70, 200, vocab - 20]] = top_vector(CROSS_SPLIT)
    targets[CROSS_SPLIT], targets[CROSS_SPLIT_LOW] = vocab - 20, 10
    # Arg-max tied at three ids inside one tile.
    weight[[3, 5, 7]] = top_vector(SAME_TILE)
    targets[SAME_TILE] = 7
    # The target tied with three other ids.
    weight[[60, 153, vocab - 1]] = weight[150].clone()
    targets[TARGET_TIED] = 150
    # Four ids tied at the max, two tied just below: a tie at the 5th/6th value for top-k 5.
    weight[[100, 101, 102, 230]] = top_vector(KTH_TIED)
    second = top_vector(KTH_TIED).clone()
    weakest = hidden[KTH_TIED].abs().argmin()
    second[weakest] = -second[weakest]
    weight[[110, 240]] = second
    targets[KTH_TIED] = 240
    hidden[MAX_TIED] = hidden[KTH_TIED]
    targets[MAX_TIED] = 100
    return hidden, weight, targets


def reference(hidden, weight, targets, scale=None, softcap=None):
    """Today's PyTorch path on the same values, the head in their dtype: a float16 head rounds
    its logits to float16, and so does the kernel."""
    model = _head(weight, scale, softcap).to(hidden.dtype)
    logits = final_logits(model, hidden).detach()
    out = logprob_and_moments(logits.clone(), targets, moments=True)
    out["logsumexp"] = torch.logsumexp(logits, dim=-1)
    return logits, out


def _close(ours: torch.Tensor, ref: torch.Tensor, atol: float) -> None:
    torch.testing.assert_close(ours.double(), ref.double(), atol=atol, rtol=0, equal_nan=True)


@interpreted
@pytest.mark.parametrize(
    ("dtype", "vocab", "scale", "softcap", "atol", "schemes"),
    [
        (torch.float32, 1000, None, None, 1e-5, SMALL_K),
        (torch.float32, 300, 0.5, 20.0, 1e-5, SCHEMES),
        (torch.float16, 300, None, None, 1e-3, SCHEMES),
    ],
    ids=["float32-V1000", "float32-V300-scale-softcap", "float16-V300"],
)
def test_matches_pytorch_path_with_planted_ties(
    dtype, vocab, scale, softcap, atol, schemes
) -> None:
    hidden, weight, targets = planted(vocab)
    detail = torch.zeros(N, dtype=torch.bool)
    detail[24:] = True  # a full row block in part and the last, partial one
    out = fused_head_stats(
        hidden.to(dtype), weight.to(dtype), targets, logit_scale=scale, softcap=softcap,
        moments=True, detail=detail, topk_schemes=schemes, tiles=SMALL,
    )  # fmt: skip
    logits, ref = reference(hidden.to(dtype), weight.to(dtype), targets, scale, softcap)
    for name in ("logprobs", "logsumexp", "mu", "sigma"):
        _close(out[name], ref[name], atol)

    others = logits.scatter(1, targets[:, None], float("-inf"))
    assert torch.equal(out["best_other"], others.argmax(dim=-1))
    stats = detail_stats(logits, targets)
    assert torch.equal(out["argmax_match"], stats["argmax_match"])
    _close(out["margins"], stats["margins"], atol)
    assert torch.equal(out["ranks"][detail], stats["ranks"][detail])
    assert torch.equal(out["ties"][detail], stats["ties"][detail])
    assert (out["ranks"][~detail] == -1).all() and (out["ties"][~detail] == -1).all()

    # The planted rows come out as planted.
    assert out["best_other"][[CROSS_SPLIT, CROSS_SPLIT_LOW, SAME_TILE]].tolist() == [10, 40, 3]
    assert out["argmax_match"][[CROSS_SPLIT, CROSS_SPLIT_LOW, SAME_TILE]].tolist() == [0, 1, 0]
    assert out["margins"][[CROSS_SPLIT, CROSS_SPLIT_LOW, SAME_TILE]].tolist() == [0, 0, 0]
    assert out["ties"][[CROSS_SPLIT, SAME_TILE, TARGET_TIED, MAX_TIED]].tolist() == [4, 2, 3, 3]

    for scheme in schemes:
        k = scheme.top_k
        expected, _ = scheme_logprobs(logits[detail], targets[detail], scheme)
        assert not out[f"topk_ties:{scheme.name}"].any()  # K >= 8 holds every planted tie
        _close(out[f"scheme:{scheme.name}"][detail], expected, atol)
        assert out[f"scheme:{scheme.name}"][~detail].isnan().all()
        top = logits[detail].topk(k + 1, dim=-1).values
        target = logits[detail].gather(1, targets[detail, None]).squeeze(1)
        kept = target >= top[:, k - 1]
        boundary = torch.where(kept, top[:, k], top[:, k - 1])
        _close(out[f"kth_margin:{scheme.name}"][detail], target - boundary, atol)
    # Top-5 at the planted row keeps both ids tied at the 5th value, as HF does.
    assert out["scheme:topk5_T0.7"][KTH_TIED] > -float("inf")
    assert out["kth_margin:topk5_T0.7"][KTH_TIED] == 0


@interpreted
def test_topk_ties_beyond_the_buffer_are_flagged() -> None:
    """Top-1 alone gives a 2-value buffer: a kept target tied at the max cannot be resolved."""
    hidden, weight, targets = planted(300)
    detail = torch.zeros(N, dtype=torch.bool)
    detail[32:] = True
    scheme = Scheme(1.0, 1)
    out = fused_head_stats(
        hidden, weight, targets, detail=detail, topk_schemes=[scheme], tiles=SMALL
    )
    flagged = out["topk_ties:topk1_T1"]
    assert flagged.nonzero().squeeze(1).tolist() == [CROSS_SPLIT, CROSS_SPLIT_LOW, SAME_TILE,
                                                     MAX_TIED]  # fmt: skip
    assert out["scheme:topk1_T1"][flagged].isnan().all()
    logits, _ = reference(hidden, weight, targets)
    expected, _ = scheme_logprobs(logits[detail], targets[detail], scheme)
    resolved = ~flagged[detail]
    _close(out["scheme:topk1_T1"][detail][resolved], expected[resolved], 1e-5)


@interpreted
def test_ranks_without_schemes() -> None:
    """Pass B without the top-k buffer: ranks and ties at scattered detail rows only."""
    hidden, weight, targets = planted(300)
    detail = torch.zeros(N, dtype=torch.bool)
    detail[[0, 17, TARGET_TIED, MAX_TIED, N - 1]] = True
    out = fused_head_stats(hidden, weight, targets, detail=detail, tiles=SMALL)
    logits, _ = reference(hidden, weight, targets)
    stats = detail_stats(logits, targets)
    for name in ("ranks", "ties"):
        assert torch.equal(out[name][detail], stats[name][detail])
        assert (out[name][~detail] == -1).all()
    assert not any(name.startswith("scheme:") for name in out)


@interpreted
@pytest.mark.parametrize(
    ("dtype", "atol"), [(torch.float32, 1e-5), (torch.float16, 1e-3)], ids=["float32", "float16"]
)
def test_moments_on_generic_data(dtype, atol) -> None:
    """Inexact logits, default tiles: the continuous statistics within the stated tolerance."""
    gen = torch.Generator().manual_seed(1)
    hidden = torch.randn(37, H, generator=gen).to(dtype)
    weight = (torch.randn(1000, H, generator=gen) * 0.3).to(dtype)
    targets = torch.randint(0, 1000, (37,), generator=gen)
    out = fused_head_stats(hidden, weight, targets, moments=True)
    logits, ref = reference(hidden, weight, targets)
    for name in ("logprobs", "logsumexp", "mu", "sigma"):
        _close(out[name], ref[name], atol)
    stats = detail_stats(logits, targets)
    _close(out["margins"], stats["margins"], atol)
    clear = stats["margins"].abs() > 1e-3
    assert torch.equal(out["argmax_match"][clear], stats["argmax_match"][clear])
    assert "ranks" not in out


def test_rejects_schemes_it_cannot_fuse() -> None:
    hidden, weight, targets = planted(300)
    for scheme in (Scheme(0.0), Scheme(1.0, 0), Scheme(1.0, 40, 0.9), Scheme(1.0, 300)):
        with pytest.raises(ValueError, match="fused top-k"):
            fused_head_stats(hidden, weight, targets, topk_schemes=[scheme])


def test_available_on_cpu_only_in_the_interpreter() -> None:
    assert fused_head_available("cpu") == IN_INTERPRETER


def _columns_of(model, head, path) -> dict[str, torch.Tensor]:
    from worker.engine.head_stats import empty_columns

    vocab = model.get_output_embeddings().weight.shape[0]
    columns = empty_columns(head.targets.shape[0], head.schemes, vocab, head.hidden.device)
    path(model, head, columns, 16)
    return columns


@interpreted
def test_rows_the_tiles_leave_open_come_from_their_logits() -> None:
    """Top-1 ties beyond the buffer and a nucleus scheme: head_stats.fused_head fills them from
    materialised logits, so every column equals the PyTorch path's; the fused top-k boundary
    bound (other row unknown) is never below the exact one."""
    import numpy as np

    from worker.engine.head_stats import HeadInput, fused_head, torch_head

    hidden, weight, targets = planted(300)
    model = _head(weight, None, None)
    detail = np.zeros(N, dtype=bool)
    detail[24:] = True
    schemes = [Scheme(0.0), Scheme(1.0, 1), Scheme(0.7, 0, 0.9), Scheme(0.7)]
    head = HeadInput(hidden, targets, np.ones(N, dtype=bool), detail, schemes, None)
    fused = _columns_of(model, head, fused_head)
    plain = _columns_of(model, head, torch_head)
    assert fused["scheme:topk1_T1"][torch.from_numpy(detail)].isfinite().any()
    for name, value in plain.items():
        if name.startswith("kth_bound:"):
            assert (fused[name][24:] >= value[24:]).all(), name
            continue
        if value.dtype in (torch.bool, torch.int64):
            assert torch.equal(fused[name], value), name
        else:
            _close(fused[name], value, 1e-5)


@interpreted
def test_the_scoring_pass_takes_the_fused_head_and_agrees() -> None:
    """score_sequences(fused=True) on a real GPT-2 equals the PyTorch path, column by column."""
    from worker.engine.scoring import ScoringRequest, score_sequences

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=300, n_embd=64, n_layer=2, n_head=2, n_positions=64)
    model = GPT2LMHeadModel(config).eval()
    gen = torch.Generator().manual_seed(2)
    requests = [
        ScoringRequest(
            torch.randint(0, 300, (length,), generator=gen).tolist(),
            detail_positions=range(length - 9, length - 1),
            moments=bool(length % 2),
        )
        for length in (12, 20, 33)
    ]
    schemes = [Scheme(0.0), Scheme(1.0, 5), Scheme(0.7, 40, 0.9)]
    plain = score_sequences(model, requests, "cpu", schemes=schemes, fused=False)
    fused = score_sequences(model, requests, "cpu", schemes=schemes, fused=True)
    for a, b in zip(plain, fused, strict=True):
        for name in ("logprobs", "margins", "entropy", "sigma", "margin_bounds"):
            left, right = getattr(a, name), getattr(b, name)
            if left is None:
                assert right is None
                continue
            torch.testing.assert_close(torch.from_numpy(right), torch.from_numpy(left),
                                       atol=1e-5, rtol=1e-4, equal_nan=True)  # fmt: skip
        for name in ("ranks", "ties", "argmax_match"):
            assert (getattr(a, name) == getattr(b, name)).all(), name
        for scheme in schemes:
            torch.testing.assert_close(
                torch.from_numpy(b.scheme_logprobs[scheme.name]),
                torch.from_numpy(a.scheme_logprobs[scheme.name]),
                atol=1e-5, rtol=0, equal_nan=True,
            )  # fmt: skip
