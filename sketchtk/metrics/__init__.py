"""sketchtk.metrics."""
