"""One router per area: feed, events and items (writes), admin, operations (health, metrics)."""
