"""The diffusion charts over stored summaries: a similarity that was not finite is stored as
null (core/db.py) and must still draw."""

from __future__ import annotations

from worker.checks.diffusion.figures import exemplar_pairs_figure

IMAGE = [[[0.0, 1.0], [1.0, 0.0]]]


def test_an_exemplar_whose_similarity_is_null_still_draws() -> None:
    def run(similarity: float | None) -> dict:
        return {"similarity": similarity, "image": IMAGE, "nearest_image": IMAGE}

    basin = {
        "most_similar": [{"id": "a", "similarity": 0.9}, {"id": "b", "similarity": None}],
        "exemplars": {"a": {"runs": [run(None), run(0.9)]}, "b": {"runs": [run(None)]}},
    }
    figure = exemplar_pairs_figure(basin)
    titles = [a.text for a in figure.layout.annotations]
    assert titles[:4] == ["a (0.900)", "nearest", "b (—)", "nearest"]
