"""Model quality: metrics, the blessing decision, and the human-readable report."""
