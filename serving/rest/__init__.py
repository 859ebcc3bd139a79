"""REST frontend: TF Serving's /v1 HTTP API (TF Serving compat spec §6)."""
