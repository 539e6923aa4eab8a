"""Pure computation on tensors and arrays: no database, Celery or HTTP in here."""
