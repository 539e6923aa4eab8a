"""PAC (worker/engine/attacks_pac.py) and the neighbourhood attack's neighbours
(worker/engine/neighbourhood.py), each held to a plain re-implementation of the authors' code:
yyy01/PAC at 79c6eca14fed3a64a7a4201cdca263de52501dae (`src/eda.py`, `attack.py`) and
iamgroot42/mimir at 1b6fd649eeeecc887275a2336c7da808ee58757d (`mimir/attacks/neighborhood.py`).
"""

from __future__ import annotations

import random
from heapq import nlargest

import numpy as np
import pytest
import torch

from tests.worker.masked_lm import build_masked_lm
from worker.demo import make_corpus
from worker.engine.attacks_pac import (
    augmentations,
    pac_score,
    polarised_distance,
    unscorable_reason,
)
from worker.engine.neighbourhood import neighbourhood_score, neighbours
from worker.loaders.masked_lm import cached_masked_lm
from worker.local import local_spec

TEXT = "the quick brown fox jumps over the lazy dog near the quiet river bank today"


def authors_eda(sentence: str, seed: int, alpha: float = 0.3, num_aug: int = 5) -> list[str]:
    """`eda` of src/eda.py as the authors run it, on Python's global generator."""
    random.seed(seed)

    def swap_word(new_words: list[str]) -> list[str]:
        i = random.randint(0, len(new_words) - 1)
        j, counter = i, 0
        while j == i:
            j = random.randint(0, len(new_words) - 1)
            counter += 1
            if counter > 3:
                return new_words
        new_words[i], new_words[j] = new_words[j], new_words[i]
        return new_words

    words = sentence.split(" ")
    n_rs = max(1, int(alpha * len(words)))
    out = []
    for _ in range(num_aug):
        a_words = words.copy()
        for _ in range(n_rs):
            a_words = swap_word(a_words)
        out.append(" ".join(a_words))
    random.shuffle(out)
    return out[:num_aug]


def authors_pd(probs: list[float], local: float = 0.3, far: float = 0.05) -> float:
    local_n = max(int(len(probs) * local), 1)
    far_n = max(int(len(probs) * far), 1)
    return float(np.mean(np.sort(probs)[::-1][:far_n]) - np.mean(np.sort(probs)[:local_n]))


def test_augmentations_are_the_authors_random_swaps_from_a_seeded_generator() -> None:
    state = random.getstate()
    for seed in (0, 7):
        assert augmentations(TEXT, seed) == authors_eda(TEXT, seed)
    random.setstate(state)
    ours = augmentations(TEXT, 3)
    assert ours == augmentations(TEXT, 3) != augmentations(TEXT, 4)
    assert len(ours) == 5 and all(sorted(a.split(" ")) == sorted(TEXT.split(" ")) for a in ours)
    assert all(a != TEXT for a in ours)
    assert augmentations("word", 0, n=3) == ["word"] * 3  # nothing to swap with


def test_pac_leaves_texts_no_swap_can_change_unscored() -> None:
    """The authors split on spaces: a one-word record, or Japanese/Thai written without spaces,
    has augmentations equal to itself, whose PAC would be a meaningless 0.0."""
    for text in ("顧客の秘密の暗証番号は123456です。", "amber", "ข้อมูลลับของลูกค้า", "x=1;y=2"):
        augmented = augmentations(text, seed=0)
        assert all(a == text for a in augmented)
        assert unscorable_reason(text, augmented) == "fewer than 2 space-separated words"
    assert unscorable_reason("same same", augmentations("same same", 0)) == (
        "no augmentation differs from the text"
    )
    text = "Customer amber has secret PIN 123456."
    assert unscorable_reason(text, augmentations(text, seed=0)) is None


def test_polarised_distance_is_far_mean_minus_local_mean() -> None:
    values = [-float(i) for i in range(20)]  # 0, -1, ..., -19
    # far: the top 1 (20 * 0.05); local: the bottom 6 (20 * 0.3).
    assert polarised_distance(values) == pytest.approx(0 - np.mean([-14, -15, -16, -17, -18, -19]))
    assert polarised_distance([-1.0, -3.0]) == pytest.approx(2.0)  # one token each side
    assert polarised_distance([]) is None
    rng = np.random.default_rng(0)
    for n in (3, 17, 64):
        probs = list(-rng.exponential(2.0, n))
        assert polarised_distance(probs) == pytest.approx(authors_pd(probs), abs=1e-12)


def test_pac_is_the_authors_pac_negated() -> None:
    record = [-0.1, -0.2, -0.3, -5.0]
    augmented = [[-0.1, -4.0, -6.0, -7.0], [-0.5, -3.0, -8.0, -9.0]]
    authors = authors_pd(record) - np.mean([authors_pd(a) for a in augmented])
    assert pac_score(record, augmented) == pytest.approx(-authors, abs=1e-12)
    assert pac_score(record, augmented) > 0  # augmenting hurt it more: member-like
    assert pac_score([], augmented) is None and pac_score(record, [[]]) is None


def test_neighbourhood_score_is_mean_neighbour_loss_minus_own() -> None:
    assert neighbourhood_score(2.0, [3.0, 4.0]) == pytest.approx(1.5)
    assert neighbourhood_score(None, [3.0]) is None and neighbourhood_score(2.0, []) is None


@pytest.fixture(scope="module")
def masked_lm(tmp_path_factory):
    corpus = make_corpus()
    root = tmp_path_factory.mktemp("masked") / "models"
    return cached_masked_lm(local_spec(build_masked_lm(root / "bert", corpus.members)))


def mimir_neighbours(text: str, model, tokenizer, n: int, seed: int) -> list[str]:
    """BertModel.generate_neighbors_ (deterministic strategy, in-place swap) one position at a
    time, after torch.manual_seed, skipping special tokens as the engine states it does."""
    torch.manual_seed(seed)
    dropout = torch.nn.Dropout(p=0.7)
    out = tokenizer(
        text, truncation=True, max_length=512, return_offsets_mapping=True, return_tensors="pt"
    )
    ids = out.input_ids
    offsets = out.offset_mapping[0]
    special = set(tokenizer.all_special_ids)
    replacements = {}
    with torch.no_grad():
        for index in range(1, ids.shape[1]):
            token = ids[0, index]
            if int(token) in special:
                continue
            embeds = model.bert.embeddings(ids)
            embeds = torch.cat(
                (
                    embeds[:, :index, :],
                    dropout(embeds[:, index, :]).unsqueeze(dim=0),
                    embeds[:, index + 1 :, :],
                ),
                dim=1,
            )
            probs = torch.softmax(model(inputs_embeds=embeds).logits, dim=2)
            original = probs[0, index, token]
            top_p, top_c = torch.topk(probs[:, index, :], 6, dim=1)
            for cand, prob in zip(top_c[0], top_p[0], strict=True):
                if cand != token and int(cand) not in special:
                    denom = 1 - 0.9 if original.item() == 1 else 1 - original.item()
                    replacements[(index, int(cand))] = prob.item() / denom
    found = []
    for index, cand in nlargest(n, replacements, key=replacements.get):
        start, end = offsets[index]
        fill = tokenizer.decode(cand).replace("##", "")
        found.append(text[:start] + fill + text[end:])
    return found


def test_neighbours_are_mimirs_word_swaps(masked_lm) -> None:
    corpus = make_corpus()
    state = torch.random.get_rng_state()
    for text in corpus.members[:2] + corpus.nonmembers[:2]:
        ours = neighbours(text, masked_lm.model, masked_lm.tokenizer, n=10, seed=5)
        assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is untouched
        reference = mimir_neighbours(text, masked_lm.model, masked_lm.tokenizer, 10, 5)
        torch.random.set_rng_state(state)
        assert ours == reference and len(ours) == 10
        assert all(neighbour != text for neighbour in ours)
        one_at_a_time = neighbours(
            text, masked_lm.model, masked_lm.tokenizer, n=10, seed=5, batch_size=1
        )
        assert one_at_a_time == ours  # batching the masked LM changes nothing
    other = neighbours(corpus.members[0], masked_lm.model, masked_lm.tokenizer, n=10, seed=6)
    assert other != neighbours(
        corpus.members[0], masked_lm.model, masked_lm.tokenizer, n=10, seed=5
    )
    assert neighbours("", masked_lm.model, masked_lm.tokenizer, n=5) == []  # no token to swap
