"""Signed evidence packs of finished audits: the payload (`pack`), the controls it serves
(`controls`), its printable page (`page`) and PDF (`pdf`). Keys and signatures: core.signing,
core.evidence_keys."""
