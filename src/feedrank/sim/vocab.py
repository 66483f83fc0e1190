"""Names of the world's categorical values: topics, subtopics, demographics, content types.

The world stores small integer codes; these lists turn them into the strings the tables carry.
The order of each list is part of the saved world (codes index into it).
"""

from __future__ import annotations

TOPIC_NAMES = (
    "news", "sports", "finance", "politics", "entertainment", "tech", "health", "lifestyle",
    "travel", "autos", "weather", "science", "music", "movies", "tv", "food", "gaming",
    "fashion", "world", "local",
)  # fmt: skip

CONTENT_TYPES = ("article", "video", "photo")

AGE_BUCKETS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
AGE_PROBS = (0.14, 0.22, 0.20, 0.17, 0.15, 0.12)
GENDERS = ("f", "m", "x")
GENDER_PROBS = (0.48, 0.48, 0.04)
COUNTRIES = ("US", "GB", "DE", "FR", "IN", "BR", "JP", "NG")
COUNTRY_PROBS = (0.30, 0.10, 0.10, 0.08, 0.18, 0.12, 0.07, 0.05)
DEVICES = ("mobile", "desktop", "tablet")
DEVICE_PROBS = (0.62, 0.30, 0.08)

# Demographic attributes in the order the world stores their topic shifts.
DEMOGRAPHICS: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "age_bucket": (AGE_BUCKETS, AGE_PROBS),
    "gender": (GENDERS, GENDER_PROBS),
    "country": (COUNTRIES, COUNTRY_PROBS),
    "device": (DEVICES, DEVICE_PROBS),
}


def topic_names(num_topics: int) -> list[str]:
    """The first `num_topics` topic names; beyond the built-in list, 'topic20', 'topic21', ..."""
    return [TOPIC_NAMES[k] if k < len(TOPIC_NAMES) else f"topic{k}" for k in range(num_topics)]


def subtopic_names(num_topics: int, per_topic: int) -> list[str]:
    """Subtopic s of topic t is at index t * per_topic + s and named '<topic>.<s>'."""
    return [f"{t}.{s}" for t in topic_names(num_topics) for s in range(per_topic)]
