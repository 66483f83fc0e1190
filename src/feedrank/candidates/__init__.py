"""Candidate sources: who proposes the few hundred items the ranker scores.

    ann        the two-tower ANN (personal; the caller brings its list)
    trending   time-decayed click counts over several windows          trending.py
    covis      items clicked after the user's recent clicks, in sessions covisitation.py
    fresh      items published in the last minutes (cold-start exposure) fresh.py
    merge      quotas, de-duplication, membership and scores per source merge.py

Serving (serve/recommender.py) and offline evaluation (eval/next_click.py) use these same
classes, so the candidates measured offline are the candidates served. The counters are
event-driven (`add_click` for one click as it arrives, `extend` for a bulk load) and every query
takes a time t and reads only events strictly before t: a source fed the whole log answers at t
exactly as one fed the log truncated at t (tests/candidates/test_leakage.py).

The result is a `CandidateSet`: item rows, an (N, S) membership mask, (N, S) source scores, and
`features()`, the (N, 2S) float32 block the ranker takes (membership, then log-scaled scores);
`source_features(lists, rows)` gives the same block for any items (a training impression's, from
the sources' lists at its time), so training and serving compute the columns one way.
"""

from feedrank.candidates.covisitation import CoVisitation, CoVisitationConfig
from feedrank.candidates.fresh import FreshConfig, FreshItems, fresh_active, fresh_scores
from feedrank.candidates.merge import (
    SOURCE_FEATURES,
    SOURCES,
    CandidateSet,
    SourceList,
    feature_names,
    merge,
    merged_rows,
    source_features,
    split_quotas,
    top_n,
    top_rows,
)
from feedrank.candidates.sources import CandidateSources, Eligible, SourcesConfig
from feedrank.candidates.trending import Trending, TrendingConfig

__all__ = [
    "SOURCES",
    "SOURCE_FEATURES",
    "CandidateSet",
    "CandidateSources",
    "CoVisitation",
    "CoVisitationConfig",
    "Eligible",
    "FreshConfig",
    "FreshItems",
    "SourceList",
    "SourcesConfig",
    "Trending",
    "TrendingConfig",
    "feature_names",
    "fresh_active",
    "fresh_scores",
    "merge",
    "merged_rows",
    "source_features",
    "split_quotas",
    "top_n",
    "top_rows",
]
