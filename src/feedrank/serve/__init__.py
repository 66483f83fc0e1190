"""Serving: the Recommender (cache → candidates → ranker → re-ranker) and the HTTP app around it."""
