"""sketchtk.models."""
