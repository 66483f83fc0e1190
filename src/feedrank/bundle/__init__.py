"""Model bundles: one immutable directory per model version, everything serving needs.

from feedrank.bundle import write_bundle, load_bundle
"""

from feedrank.bundle.loader import Bundle, load_bundle
from feedrank.bundle.writer import write_bundle

__all__ = ["Bundle", "load_bundle", "write_bundle"]
