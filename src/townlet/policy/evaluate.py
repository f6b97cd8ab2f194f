"""``evaluate_policy``: the mean and spread of a policy's episode return, on seeded episodes.

Every episode has its own reset seed, derived from the evaluation seed alone, so two policies
evaluated with the same ``seed`` and ``episodes`` meet exactly the same starts — the pairing
the behaviour gate (:func:`~townlet.policy.training.services.behaviour_gate.paired_return_gate`)
needs.

* The town: an episode is one world episode (``episode_length`` ticks) from
  ``reset(config, seed_i)``; its return is the agents' mean undiscounted reward sum (agents that
  faint respawn and keep collecting).
* A Gymnasium environment: an episode runs until it terminates or is truncated; the K copies of
  the source play K episodes at once (one batched policy call per step).

Actions are **sampled** by default, as in training: a stochastic policy's argmax is another
policy (in the town a BC or PPO network that samples well can look near-random when it always
takes its most likely action). ``deterministic=True`` makes a network policy act greedily
(argmax); scripted and random policies act as they always do, drawing from a generator seeded
per episode. Every :class:`PolicyEvaluation` says which it measured in ``mode`` (``"sampled"``
or ``"argmax"``), and :func:`evaluate_modes` reports both side by side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
from numpy.typing import NDArray

from townlet.envs.gymnasium_adapter import GymnasiumSource, make_gymnasium_source
from townlet.errors import RolloutError
from townlet.policy.rollout.capture import make_stepper, resolve_policy
from townlet.policy.rollout.sources import Actor, Obs, Stepper, TownStepper, episode_seed
from townlet.world import WorldConfig

POLICY_STREAM = 5  # episode i's policy generator is default_rng([seed, i, POLICY_STREAM])
DEFAULT_MAX_STEPS = 100_000
MAX_COPIES = 32  # Gymnasium copies an id string is evaluated with
EVAL_MODES: tuple[str, ...] = ("sampled", "argmax")


def _floats(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(float(x) for x in values)


def _ints(values: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(x) for x in values)


@attrs.frozen(kw_only=True)
class PolicyEvaluation:
    """Per-episode returns (undiscounted) and lengths (steps or ticks) of an evaluation.

    ``seeds`` are the episodes' reset seeds, ``env`` names the environment, ``deterministic``
    whether greedy actions were asked for, and ``mode`` what was measured: ``"argmax"`` when a
    network policy acted greedily, else ``"sampled"`` (scripted and random policies always
    sample). Left out, ``mode`` follows ``deterministic``.
    """

    returns: tuple[float, ...] = attrs.field(converter=_floats)
    lengths: tuple[int, ...] = attrs.field(converter=_ints)
    seeds: tuple[int, ...] = attrs.field(converter=_ints)
    env: str
    deterministic: bool
    mode: str = attrs.field(validator=attrs.validators.in_(EVAL_MODES))

    @mode.default
    def _mode_from_deterministic(self) -> str:
        return "argmax" if self.deterministic else "sampled"

    @property
    def episodes(self) -> int:
        """Number of episodes evaluated."""
        return len(self.returns)

    @property
    def mean(self) -> float:
        """Mean episode return."""
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        """Population standard deviation of the episode returns (0 for one episode)."""
        return float(np.std(self.returns))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: ``mode``, ``mean``, ``std``, ``episodes`` and the per-episode
        lists."""
        return {
            "env": self.env,
            "mode": self.mode,
            "episodes": self.episodes,
            "deterministic": self.deterministic,
            "mean": self.mean,
            "std": self.std,
            "returns": list(self.returns),
            "lengths": list(self.lengths),
            "seeds": list(self.seeds),
        }


def _source(env: object, episodes: int) -> tuple[object, str, bool]:
    """The capture source for ``env``, its display name, and whether we made (and must close) it.

    An id string gets ``min(episodes, MAX_COPIES)`` copies so that episodes run side by side.
    """
    if isinstance(env, str):
        if env == "town":
            return WorldConfig(), "town", False
        if env.startswith("gymnasium:"):
            env_id = env.split(":", 1)[1]
            copies = min(episodes, MAX_COPIES)
            return make_gymnasium_source(env_id, num_envs=copies), env, True
        raise RolloutError(f"env must be 'town' or 'gymnasium:<id>', got {env!r}")
    if isinstance(env, WorldConfig):
        return env, "town", False
    if isinstance(env, GymnasiumSource):
        return env, f"gymnasium:{env.env_id}", False
    raise RolloutError(
        "env must be 'town', 'gymnasium:<id>', a WorldConfig or a GymnasiumSource, "
        f"got {type(env).__name__}"
    )


def _greedy(policy: object, deterministic: bool) -> tuple[object, str]:
    """A network policy switched to argmax when ``deterministic`` (other policies unchanged),
    and the mode it will act in."""
    if deterministic and hasattr(policy, "greedy") and attrs.has(type(policy)):
        return attrs.evolve(policy, greedy=True), "argmax"  # type: ignore[misc]
    if getattr(policy, "greedy", False) is True:
        return policy, "argmax"
    return policy, "sampled"


def _check(episodes: object, seed: object, max_steps: object) -> None:
    for name, value, low in (
        ("episodes", episodes, 1),
        ("seed", seed, 0),
        ("max_steps", max_steps, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise RolloutError(f"{name} must be an int >= {low}, got {value!r}")


def _town_episode(
    stepper: TownStepper, act: Actor, seed: int, rng: np.random.Generator, max_steps: int
) -> tuple[float, int]:
    obs = stepper.reset(seed)
    totals = np.zeros(stepper.config.num_agents, dtype=np.float64)
    ticks = min(stepper.config.episode_length, max_steps)
    for _ in range(ticks):
        actions, _, _ = act(obs, rng)
        out = stepper.step(actions)
        totals += out.rewards
        obs = out.next_obs
    return float(totals.mean()), ticks


def _gym_batch(
    stepper: Stepper, act: Actor, seed: int, rng: np.random.Generator, max_steps: int
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Play one episode on each of the K copies (reset from ``seed``); returns and lengths."""
    obs: Obs = stepper.reset(seed)
    count = obs.features.shape[0]
    totals = np.zeros(count, dtype=np.float64)
    lengths = np.zeros(count, dtype=np.int64)
    running = np.ones(count, dtype=np.bool_)
    for _ in range(max_steps):
        actions, _, _ = act(obs, rng)
        out = stepper.step(actions)
        totals += np.where(running, out.rewards, 0.0)
        lengths += running
        running &= ~out.dones
        if not running.any():
            break
        obs = out.next_obs
    return totals, lengths


def evaluate_policy(
    policy: object,
    env: object = "town",
    *,
    episodes: int = 10,
    seed: int = 0,
    deterministic: bool = False,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> PolicyEvaluation:
    """Run ``episodes`` seeded episodes of ``policy`` in ``env``; their returns and lengths.

    Actions are sampled unless ``deterministic`` (argmax for a network policy); the result's
    ``mode`` says which (the default used to be argmax: pass ``deterministic=True`` for it).

    ``policy``: ``"scripted"`` (town only), ``"random"``, a checkpoint path, or a policy object
    such as :func:`~townlet.policy.rollout_torch.make_network_policy` ``(params, spec)``.
    ``env``: ``"town"``, ``"gymnasium:<id>"``, a :class:`~townlet.world.WorldConfig` or a
    :class:`~townlet.envs.gymnasium_adapter.GymnasiumSource` (its K copies play K episodes at
    a time; an id string gets ``min(episodes, 32)`` copies). ``max_steps`` caps an episode's
    length (a Gymnasium episode still running then is cut there). Same arguments, same result.

    Raises:
        RolloutError: a bad ``episodes``/``seed``/``max_steps``, an unknown env, or a policy
            that does not fit the environment.
    """
    _check(episodes, seed, max_steps)
    source, name, owned = _source(env, episodes)
    try:
        return _evaluate(source, name, policy, episodes, seed, deterministic, max_steps)
    finally:
        if owned and isinstance(source, GymnasiumSource):
            source.close()


def _evaluate(
    source: object,
    name: str,
    policy: object,
    episodes: int,
    seed: int,
    deterministic: bool,
    max_steps: int,
) -> PolicyEvaluation:
    stepper = make_stepper(source)
    acting, mode = _greedy(resolve_policy(policy, stepper.info), deterministic)
    act = stepper.actor(acting)
    seeds = [episode_seed(seed, i) for i in range(episodes)]
    returns: list[float] = []
    lengths: list[int] = []
    if isinstance(stepper, TownStepper):
        for i, episode_start in enumerate(seeds):
            rng = np.random.default_rng([seed, i, POLICY_STREAM])
            total, ticks = _town_episode(stepper, act, episode_start, rng, max_steps)
            returns.append(total)
            lengths.append(ticks)
    else:
        width = len(stepper.info.agent_ids)
        # Copy k of batch b starts from seeds[b * width] + k (GymnasiumSource.reset).
        for batch in range(math.ceil(episodes / width)):
            rng = np.random.default_rng([seed, batch, POLICY_STREAM])
            totals, steps = _gym_batch(stepper, act, seeds[batch * width], rng, max_steps)
            returns.extend(totals.tolist())
            lengths.extend(steps.tolist())
        seeds = [seeds[(i // width) * width] + i % width for i in range(episodes)]
        returns, lengths = returns[:episodes], lengths[:episodes]
    return PolicyEvaluation(
        returns=returns,
        lengths=lengths,
        seeds=seeds,
        env=name,
        deterministic=deterministic,
        mode=mode,
    )


def evaluate_modes(
    policy: object,
    env: object = "town",
    *,
    episodes: int = 10,
    seed: int = 0,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> dict[str, PolicyEvaluation]:
    """``{"sampled": ..., "argmax": ...}``: :func:`evaluate_policy` in both modes on the same
    episode seeds, so the two can be read side by side (and paired)."""
    return {
        mode: evaluate_policy(
            policy,
            env,
            episodes=episodes,
            seed=seed,
            deterministic=mode == "argmax",
            max_steps=max_steps,
        )
        for mode in EVAL_MODES
    }
