"""Model-free measurements of a training corpus: duplication counts that predict memorization."""
