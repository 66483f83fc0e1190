"""The policies a bundle can serve in a simulated A/B test (a module of its own so that the
command line can list them without loading serving)."""

VARIANTS = ("ranker", "clicks-only", "two-tower", "popularity", "popularity-served", "random")
