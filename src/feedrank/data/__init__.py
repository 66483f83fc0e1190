"""Data layer: canonical tables, source adapters, validation, splits and descriptions."""
