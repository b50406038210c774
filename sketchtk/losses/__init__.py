"""sketchtk.losses: pure loss functions (shapes in docstrings, equations cited)."""
