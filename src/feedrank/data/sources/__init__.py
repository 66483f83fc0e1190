"""Source adapters: read one log format, validate every row, write canonical tables."""
