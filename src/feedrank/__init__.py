"""feedrank: a news-feed ranking system you can run on a laptop and scale out on a cluster."""

from feedrank.threads import prefer_passive_waits

prefer_passive_waits()  # before any module imports torch: OpenMP reads it once, at load

__version__ = "0.1.0"
