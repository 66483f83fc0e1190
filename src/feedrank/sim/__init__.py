"""A simulated news-feed world with known ground truth: the built-in default data set.

    from feedrank.sim import SimConfig, World, simulate

    ds = simulate(SimConfig.preset("small"), "runs/sim")   # canonical dataset + runs/sim/world/
    world = World.load(ds.path)                            # latent users, items, publishers
    world.expected_utility(users, items, t_s)              # ground truth, vectorized

Modules: config (SimConfig, ResponseParams), generate (drawing a world), world (World: latent
parameters, ground truth, ids, save/load), response (the response model), policy (the logging
policy and its propensities), tables (canonical frames), simulate (the streaming loop), storage
(saving and loading a World), prior (the ground truth for a brand-new user), posterior (the best
feed given what the log shows about a user; its sampler in simplex_is), ids, vocab.
The generative model is written out in docs/simulator.md.
"""

from feedrank.sim.config import ResponseParams, SimConfig
from feedrank.sim.policy import LoggingPolicy, sample_slates
from feedrank.sim.response import Responses
from feedrank.sim.simulate import simulate
from feedrank.sim.world import World

__all__ = ["LoggingPolicy", "ResponseParams", "Responses", "SimConfig", "World", "sample_slates", "simulate"]
