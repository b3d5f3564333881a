"""The On-Premises client's API: login or key, /v1/support, /v1/health, shards."""
