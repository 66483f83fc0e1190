"""The ground truth for a user the world has not met: expected utility under the generative model.

A brand-new user's interests are unknown, but the model they are drawn from is not
(generate._interests): prior = softmax(log topic popularity + the topic shifts of the user's
demographic values), interests ~ Dirichlet(interest_concentration * prior), and the user's device
adds its content-type bias to an item's appeal. The best feed for such a user ranks the live items
by the utility *expected* over that distribution, which is what `NewUserPrior.expected_utility`
estimates by Monte Carlo. An attribute the request does not carry (or a value the world does not
know) is drawn from the population's shares (vocab.DEMOGRAPHICS), so a request with no
demographics gets the expectation over the whole population.

    prior = NewUserPrior(world, draws=512, seed=0)
    u = prior.expected_utility({"country": "US", "device": "mobile"}, items, t_s)   # (C,)

Utility is not linear in the interests (a sigmoid times an exponential), so this is not the
utility of the mean interests; the same seeded draws serve every call, so two feeds of the same
demographics are the same.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from feedrank.sim import vocab as names
from feedrank.sim.world import World

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


class NewUserPrior:
    """Draws of a brand-new user's interests and device given (some of) their demographics."""

    def __init__(self, world: World, draws: int = 512, seed: int = 0) -> None:
        if draws < 1:
            raise ValueError(f"NewUserPrior: draws must be at least 1, got {draws}")
        self.world = world
        self.draws = draws
        self.seed = seed
        self._cache: dict[tuple[tuple[str, int], ...], tuple[F64, I64]] = {}

    def codes(self, demographics: Mapping[str, str]) -> dict[str, int]:
        """The world's code of each attribute the request names with a value the world knows."""
        out: dict[str, int] = {}
        for attr, values in self.world.vocab.demographics.items():
            value = demographics.get(attr)
            if value is not None and value in values:
                out[attr] = values.index(value)
        return out

    def sample(self, demographics: Mapping[str, str]) -> tuple[F64, I64]:
        """`draws` interest rows (D, K) and device codes (D,) of a new user with these demographics."""
        codes = self.codes(demographics)
        key = tuple(sorted(codes.items()))
        if key not in self._cache:
            self._cache[key] = self._draw(codes)
        return self._cache[key]

    def expected_utility(self, demographics: Mapping[str, str], items: npt.ArrayLike, t_s: float) -> F64:
        """(C,) utility of each item if examined, expected over the new user's possible interests."""
        interests, device = self.sample(demographics)
        items = np.asarray(items, dtype=np.int64)
        f = self.world.features_of(interests[:, None, :], device[:, None], items[None, :], t_s)
        out: F64 = self.world.model.utility(f).mean(axis=0)
        return out

    def _draw(self, codes: Mapping[str, int]) -> tuple[F64, I64]:
        world, d = self.world, self.draws
        # One stream per set of given attributes: the draws do not depend on the order of calls.
        rng = np.random.default_rng([self.seed, 23, zlib.crc32(repr(sorted(codes.items())).encode())])
        drawn: dict[str, I64] = {}
        for attr, (values, probs) in names.DEMOGRAPHICS.items():
            if attr in codes:
                drawn[attr] = np.full(d, codes[attr], dtype=np.int64)
            else:
                p = np.asarray(probs, dtype=np.float64)
                drawn[attr] = rng.choice(len(values), size=d, p=p / p.sum()).astype(np.int64)
        logits = np.log(world.topic_popularity)[None, :] + sum(
            world.demographic_shift[a][drawn[a]] for a in names.DEMOGRAPHICS
        )
        prior = np.exp(logits - logits.max(axis=1, keepdims=True))
        prior /= prior.sum(axis=1, keepdims=True)
        gammas = rng.standard_gamma(world.config.interest_concentration * prior)
        total = gammas.sum(axis=1, keepdims=True)
        interests: F64 = np.where(total > 0, gammas / np.where(total > 0, total, 1.0), prior)
        return interests, drawn["device"]
