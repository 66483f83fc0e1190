"""Candidate generation indexes: exact, IVF and HNSW inner-product search over item vectors.

spec.py       IndexSpec (kind + parameters), thread setting
build.py      spec → trained faiss index; the small-catalog fallback
ann.py        AnnIndex: search / add / remove / save / load over int64 catalog ids
store.py      the on-disk layout (faiss file + npy id map + JSON), no pickle
managed.py    ManagedIndex: incremental adds, rebuild policy, atomic swap, counters
tune.py       tune(): sweep nprobe / efSearch for a target recall; render_tune_report
measure.py    recall@k and latency measurement
synthetic.py  clustered test vectors with exact ground truth
"""

from feedrank.index.ann import AnnIndex
from feedrank.index.managed import IndexStats, ManagedIndex, RebuildPolicy
from feedrank.index.measure import Latency, recall_at_k
from feedrank.index.spec import KINDS, IndexSpec, Kind, num_threads, set_num_threads
from feedrank.index.tune import Trial, TuneCandidates, TuneReport, render_tune_report, tune

__all__ = [
    "KINDS",
    "AnnIndex",
    "IndexSpec",
    "IndexStats",
    "Kind",
    "Latency",
    "ManagedIndex",
    "RebuildPolicy",
    "Trial",
    "TuneCandidates",
    "TuneReport",
    "num_threads",
    "recall_at_k",
    "render_tune_report",
    "set_num_threads",
    "tune",
]
