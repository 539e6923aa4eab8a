"""Corpus-level computation for dataset audits: duplication, near duplicates, contamination."""
