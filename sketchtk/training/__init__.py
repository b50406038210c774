"""sketchtk.training."""
