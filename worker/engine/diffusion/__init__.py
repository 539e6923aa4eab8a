"""Diffusion memorization (METRICS.md §9): classifier-free guidance and its transition points,
FLIPD local intrinsic dimension, and the model-free LPCA estimate."""
