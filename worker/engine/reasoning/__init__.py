"""Reasoning memorization (METRICS.md §6): Knights-and-Knaves puzzles, their perturbations,
the answer judge and LiMem."""
