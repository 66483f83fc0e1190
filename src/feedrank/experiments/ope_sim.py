"""Off-policy evaluation checked in the simulator, where every policy's true value is known.

From a simulated log, `logged_slot` takes one decision per request at a slot (slot 0 by default):
the user, the time, the logged item, its click and its logged propensity. A target policy sees, as
a request's candidates, the items live at the request time that the logging policy could show:
published in (t - catalog_hours, t0], where t0 is when the logging policy last refreshed its
probabilities (the first request of the request's chunk, rebuilt from the simulator's chunking
rule). Items published after t0 had logging probability 0, so no log can evaluate them.

The true value needs no simulation: a click at slot s depends only on the item there, so

    V(π) = mean over logged requests of  exam(s) · Σ_a π_s(a | x) · click_prob(u, a, t)

exactly (world.examination, world.click_prob), with no Monte Carlo error. It is the value on the
log's own contexts (and, for s > 0, its logged prefixes), which is what the estimators estimate
without bias given those contexts; their intervals, which also count the spread of contexts, are
slightly conservative for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from feedrank.errors import DataError
from feedrank.experiments.ope import F64, I64, BanditData, ScoreFn, SoftmaxPolicy
from feedrank.sim import World

HOUR_US = 3_600_000_000
_BLOCK_CELLS = 1_000_000  # (rows x candidates) evaluated at once: bounds memory (~8 MB per array)


@dataclass(frozen=True)
class LoggedSlot:
    """Decisions at one slot of a simulated log: one row per request, (N,) arrays."""

    slot: int
    request: I64  # request number (the n of "r<n>")
    user: I64
    t_s: F64  # request time, epoch seconds
    policy_t_s: F64  # when the logging policy computed the probabilities this slate was drawn from
    item: I64  # logged item at the slot
    reward: F64  # 1.0 when it was clicked
    propensity: F64  # logged propensity of the item at the slot
    prefix: I64  # (N, slot) items in the earlier slots

    def take(self, rows: I64) -> LoggedSlot:
        fields = ("request", "user", "t_s", "policy_t_s", "item", "reward", "propensity", "prefix")
        return replace(self, **{f: getattr(self, f)[rows] for f in fields})


def logged_slot(impressions: pl.DataFrame, world: World, slot: int = 0) -> LoggedSlot:
    """The decisions at `slot` of every request of a simulated impressions table."""
    frame = (
        impressions.with_columns(request=pl.col("request_id").str.slice(1).cast(pl.Int64))
        .filter(pl.col("position") <= slot)
        .sort("request", "position")
    )
    if frame.get_column("propensity").null_count() or frame.height % (slot + 1):
        raise DataError(f"impressions: every request needs slots 0..{slot} with a propensity")
    k = slot + 1
    positions = frame.get_column("position").to_numpy().reshape(-1, k)
    if not np.array_equal(positions, np.broadcast_to(np.arange(k), positions.shape)):
        raise DataError(f"impressions: every request needs slots 0..{slot} with a propensity")
    items = world.item_index(frame.get_column("item_id")).reshape(-1, k)
    at = frame.filter(pl.col("position") == slot)
    ts_us = at.get_column("ts").dt.epoch("us").to_numpy().astype(np.int64)
    request = at.get_column("request").to_numpy().astype(np.int64)
    return LoggedSlot(
        slot=slot,
        request=request,
        user=world.user_index(at.get_column("user_id")),
        t_s=ts_us / 1e6,
        policy_t_s=_policy_times(request, ts_us, world) / 1e6,
        item=items[:, slot],
        reward=at.get_column("clicked").to_numpy().astype(np.float64),
        propensity=at.get_column("propensity").to_numpy().astype(np.float64),
        prefix=items[:, :slot],
    )


def _policy_times(request: I64, ts_us: I64, world: World) -> F64:
    """The simulator refreshes its policy at the first request of each chunk: chunks are runs of
    at most `chunk_requests` consecutive requests within one clock hour of the window."""
    start_us = round(world.start_s * 1e6)
    hour = (ts_us - start_us) // HOUR_US
    order = np.lexsort((request, hour))
    hour_sorted = hour[order]
    first_of_hour = np.searchsorted(hour_sorted, hour_sorted, side="left")
    rank = np.arange(order.size) - first_of_hour  # position of the request within its hour
    chunk_first = first_of_hour + (rank // world.config.chunk_requests) * world.config.chunk_requests
    out = np.empty(order.size, dtype=np.float64)
    out[order] = ts_us[order][chunk_first]
    return out


@dataclass(frozen=True)
class PolicyValue:
    """A target policy's logged-decision data for the estimators, and its true value.
    `data` has no reward-model values; `with_model(name)` adds those of one reward model."""

    data: BanditData
    truth: float
    models: dict[str, tuple[F64, F64]]  # name -> (Σ_a π r̂, r̂ of the logged item), (N,) each

    def with_model(self, name: str) -> BanditData:
        value, logged = self.models[name]
        return replace(self.data, model_value=value, model_logged=logged)


def evaluate_policies(
    world: World,
    logged: LoggedSlot,
    policies: Mapping[str, SoftmaxPolicy],
    reward_models: Mapping[str, ScoreFn] | None = None,
) -> dict[str, PolicyValue]:
    """Each policy's BanditData, reward-model values (one entry per model in `reward_models`) and
    exact true value on the logged decisions; see the module docstring."""
    n, names, models = logged.item.size, list(policies), dict(reward_models or {})
    target = {p: np.zeros(n) for p in names}
    truth = {p: np.zeros(n) for p in names}
    model_value = {(p, m): np.zeros(n) for p in names for m in models}
    model_logged = {m: np.zeros(n) for m in models}
    exam = float(world.examination(logged.slot))
    pub, live_s = world.items.published_s, world.config.catalog_hours * 3600.0
    for rows in _blocks(logged, world):
        lo = np.searchsorted(pub, logged.t_s[rows] - live_s, side="right")  # (B,) first live item
        hi = int(np.searchsorted(pub, logged.policy_t_s[rows].max(), side="right"))
        cand = np.broadcast_to(np.arange(lo.min(), hi), (rows.size, hi - lo.min()))  # (B, C)
        mask = (cand >= lo[:, None]) & (pub[cand] <= logged.policy_t_s[rows, None])
        # Items already placed in earlier slots cannot be placed again (the Plackett-Luce step).
        mask &= ~(cand[:, :, None] == logged.prefix[rows, None, :]).any(axis=2)
        users, t_s, at = logged.user[rows], logged.t_s[rows], np.arange(rows.size)
        click = world.click_prob(users[:, None], cand, t_s[:, None])  # (B, C) P(click | examined)
        col = logged.item[rows] - lo.min()
        in_set = mask[at, col]
        r_hat = {m: model(users, t_s, cand) for m, model in models.items()}  # (B, C) each
        for m, values in r_hat.items():
            model_logged[m][rows] = values[at, col]
        for name in names:
            pi = policies[name].probabilities(users, t_s, cand, mask)  # (B, C)
            pi = pi / pi.sum(axis=1, keepdims=True)  # renormalized over the items still free
            target[name][rows] = np.where(in_set, pi[at, col], 0.0)
            truth[name][rows] = exam * (pi * click).sum(axis=1)
            for m, values in r_hat.items():
                model_value[name, m][rows] = (pi * values).sum(axis=1)
    return {
        name: PolicyValue(
            BanditData(logged.reward, logged.propensity, target[name]),
            float(truth[name].mean()),
            {m: (model_value[name, m], model_logged[m]) for m in models},
        )
        for name in names
    }


def noisy_truth_model(world: World, noise_sd: float = 0.5, seed: int = 0, slot: int = 0) -> ScoreFn:
    """A decent reward model for validation: the true click probability at `slot` with fixed
    N(0, noise_sd²) noise per item on the logit scale (what a good learned model might get)."""
    noise = np.random.default_rng([seed, 98]).normal(0.0, noise_sd, world.num_items)
    exam = float(world.examination(slot))

    def predict(users: I64, t_s: F64, cand: I64) -> F64:
        p = np.clip(world.click_prob(users[:, None], cand, t_s[:, None]), 1e-9, 1 - 1e-9)
        out: F64 = exam / (1.0 + np.exp(-(np.log(p / (1 - p)) + noise[cand])))
        return out

    return predict


def _blocks(logged: LoggedSlot, world: World) -> list[I64]:
    """Row blocks in policy-time order: few and large, since every block costs a few calls into
    the world and the policies, but within _BLOCK_CELLS rows x candidates."""
    order = np.argsort(logged.policy_t_s, kind="stable")
    times = logged.policy_t_s[order]
    pub = world.items.published_s
    hi = np.searchsorted(pub, times, side="right")  # candidates end at the policy time ...
    lo = np.searchsorted(pub, times - world.config.catalog_hours * 3600.0, side="right")  # ... start here
    blocks: list[I64] = []
    begin = 0
    while begin < times.size:
        look = min(times.size, begin + _BLOCK_CELLS // max(int(hi[begin] - lo[begin]), 1) + 1)
        width = hi[begin:look] - lo[begin]  # candidate columns if the block ended here
        # Bounded cells, and at most 25 % more columns than one row's catalog: wider blocks
        # spend their work on items that are not live for most of their rows.
        fits = (np.arange(1, look - begin + 1) * width <= _BLOCK_CELLS) & (width <= 1.25 * width[0] + 8)
        end = begin + max(1, int(fits.sum()))  # both conditions hold on a prefix: width grows
        blocks.append(order[begin:end])
        begin = end
    return blocks


def world_policies(world: World, seed: int = 0) -> dict[str, SoftmaxPolicy]:
    """Target policies for validation, from best to worst in the default world:

    personal  softmax of the true click logit plus fixed N(0, 0.5²) noise per item (a decent model)
    popular   softmax of appeal + 2 (freshness - 1): non-personal broad appeal and recency
    uniform   every candidate equally likely
    """
    noise = np.random.default_rng([seed, 99]).normal(0.0, 0.5, world.num_items)

    def personal(users: I64, t_s: F64, cand: I64) -> F64:
        p = np.clip(world.click_prob(users[:, None], cand, t_s[:, None]), 1e-9, 1 - 1e-9)
        out: F64 = np.log(p / (1 - p)) + noise[cand]
        return out

    def popular(users: I64, t_s: F64, cand: I64) -> F64:
        f = world.features(users[:, None], cand, t_s[:, None])
        out: F64 = f.appeal + 2.0 * (f.freshness - 1.0)
        return out

    def uniform(users: I64, t_s: F64, cand: I64) -> F64:
        return np.zeros(cand.shape)

    return {
        "personal": SoftmaxPolicy(personal, temperature=1.0, epsilon=0.2),
        "popular": SoftmaxPolicy(popular, temperature=1.0, epsilon=0.2),
        "uniform": SoftmaxPolicy(uniform, temperature=1.0, epsilon=0.0),
    }
