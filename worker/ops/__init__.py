"""Operating the workers: their Prometheus metrics, each worker's metrics endpoint, and log lines."""
