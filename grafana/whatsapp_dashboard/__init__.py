"""The Grafana dashboard, built with Grafana's own foundation SDK, one module per row."""
