"""The upstreams: one client per API, each owning one attempt, and the models of their answers."""
