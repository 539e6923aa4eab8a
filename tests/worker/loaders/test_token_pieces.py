"""The token view's pieces: each token's added text, a character split across byte tokens shown
once, whole; decoded incrementally, in work linear in the tokens."""

from __future__ import annotations

from worker.demo import build_tokenizer
from worker.loaders.models import LoadedModel

TEXT = "Grüße aus Köln 日本語のテキスト 🙂👍 naïve café — done. " * 3


def _model() -> LoadedModel:
    tokenizer = build_tokenizer(["plain ascii words only, nothing else"] * 4, vocab_size=280)
    return LoadedModel(None, None, tokenizer, "cpu", "float32", "")  # type: ignore[arg-type]


def _cumulative(lm: LoadedModel, ids: list[int]) -> list[str]:
    """The plain definition: decode every prefix, keep what each token adds."""
    pieces, previous = [], ""
    for end in range(1, len(ids) + 1):
        text = lm.decode(ids[:end])
        if text.endswith("\ufffd"):
            pieces.append("")
            continue
        pieces.append(text[len(previous) :])
        previous = text
    return pieces


def test_pieces_match_cumulative_decoding_and_rebuild_the_text() -> None:
    lm = _model()
    ids = lm.encode(TEXT)
    assert len(ids) > len(TEXT)  # multi-byte characters span several byte tokens
    pieces = lm.token_pieces(ids)
    assert pieces == _cumulative(lm, ids)
    assert "".join(pieces) == TEXT and "\ufffd" not in "".join(pieces)
    assert "🙂" in pieces and "" in pieces  # the emoji shown whole, on its last byte token


def test_pieces_decode_work_linear_in_the_tokens() -> None:
    lm = _model()
    ids = lm.encode(TEXT * 4)
    decoded = []
    plain = lm.decode
    lm.decode = lambda part: decoded.append(len(part)) or plain(part)  # type: ignore[method-assign]
    lm.token_pieces(ids)
    # Cumulative decoding reads n(n+1)/2 tokens; incremental, a few per token.
    assert sum(decoded) < 10 * len(ids) < len(ids) * (len(ids) + 1) // 2
