"""sketchtk.layers."""
