"""Check kinds, one folder per family (see `registry.py` and the README's "Adding a check
kind"). Each family's `__init__` declares a `FAMILY`; nothing heavy is imported here."""
