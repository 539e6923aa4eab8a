"""memaudit's HTTP service: the API routes and the dashboard, over `core/`."""
