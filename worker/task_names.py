"""Task names, shared by the API (which sends by name) and the worker (which registers them)."""

RUN_SHARD = "memaudit.run_shard"
FINALIZE_AUDIT = "memaudit.finalize_audit"
REAP_STALE_SHARDS = "memaudit.reap_stale_shards"
DELIVER_CALLBACK = "memaudit.deliver_callback"
