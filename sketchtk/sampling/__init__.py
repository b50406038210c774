"""sketchtk.sampling."""
