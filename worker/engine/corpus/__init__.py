"""Model-free corpus analyses: duplication, near duplicates, PII, contamination."""
