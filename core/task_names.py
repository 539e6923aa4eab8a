"""Task names, shared by the API (which sends by name) and the worker (which registers them)."""

RUN_SHARD = "memaudit.run_shard"
FINALIZE_AUDIT = "memaudit.finalize_audit"
REAP_STALE_SHARDS = "memaudit.reap_stale_shards"
DELIVER_CALLBACK = "memaudit.deliver_callback"
HANDLE_REGISTRY_EVENT = "memaudit.handle_registry_event"
WRITE_BACK_TO_REGISTRY = "memaudit.write_back_to_registry"
RECONCILE_REGISTRY = "memaudit.reconcile_registry"
