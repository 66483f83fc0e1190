"""A World on disk: world.npz holds every latent array, world.json the config and the names.

    OUT/world/world.npz    users.interests, users.arrival_s, ..., items.*, publishers.*,
                           demographic_shift.<attribute>, topic_popularity, device_type_bias
    OUT/world/world.json   format_version, config (SimConfig.to_dict), vocab, counts, id prefixes

Arrays are stored as they are (no pickling, exact dtypes), so a loaded world reproduces every
utility bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from feedrank.errors import DatasetError, SourceNotFoundError
from feedrank.sim import ids
from feedrank.sim.config import SimConfig
from feedrank.sim.world import WORLD_DIR, Items, Publishers, Users, Vocab, World

FORMAT_VERSION = 1
ARRAYS = "world.npz"
META = "world.json"


def save_world(world: World, path: Path) -> Path:
    """Write `world` into directory `path` (created if needed); returns `path`."""
    path.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, npt.NDArray[Any]] = {
        "topic_popularity": world.topic_popularity,
        "device_type_bias": world.device_type_bias,
    }
    for part, obj in (("users", world.users), ("publishers", world.publishers), ("items", world.items)):
        for f in dataclasses.fields(obj):
            arrays[f"{part}.{f.name}"] = getattr(obj, f.name)
    for attr, shift in world.demographic_shift.items():
        arrays[f"demographic_shift.{attr}"] = shift
    np.savez(path / ARRAYS, allow_pickle=False, **arrays)
    meta = {
        "format_version": FORMAT_VERSION,
        "config": world.config.to_dict(),
        "vocab": dataclasses.asdict(world.vocab),
        "counts": {"users": world.num_users, "items": world.num_items, "publishers": world.num_publishers},
        "id_prefixes": {"user": ids.USER, "item": ids.ITEM, "publisher": ids.PUBLISHER},
    }
    (path / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return path


def load_world(path: Path) -> World:
    """Read a world saved by `save_world`; `path` is its folder or a dataset directory with world/."""
    if (path / WORLD_DIR / META).is_file():
        path = path / WORLD_DIR
    if not (path / META).is_file():
        raise SourceNotFoundError(path / META, "simulator world")
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path / META}: unreadable world description: {exc}") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise DatasetError(f"{path / META}: world format {meta.get('format_version')!r} is not supported")
    with np.load(path / ARRAYS, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}

    def part(name: str, kind: type[Any]) -> Any:
        return kind(**{f.name: arrays[f"{name}.{f.name}"] for f in dataclasses.fields(kind)})

    v = meta["vocab"]
    vocab = Vocab(
        topics=tuple(v["topics"]),
        subtopics=tuple(v["subtopics"]),
        demographics={k: tuple(vals) for k, vals in v["demographics"].items()},
        content_types=tuple(v["content_types"]),
    )
    return World(
        config=SimConfig.from_dict(meta["config"]),
        users=part("users", Users),
        publishers=part("publishers", Publishers),
        items=part("items", Items),
        vocab=vocab,
        topic_popularity=arrays["topic_popularity"],
        demographic_shift={a: arrays[f"demographic_shift.{a}"] for a in vocab.demographics},
        device_type_bias=arrays["device_type_bias"],
    )
