"""feedrank: a news-feed ranking system you can run on a laptop and scale out on a cluster."""

__version__ = "0.1.0"
