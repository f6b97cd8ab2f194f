"""What one PPO minibatch update reports, as plain numbers (``spec/reference-ppo.md`` §6.6).

Torch-free, beside the summary code that reduces it (``summary``): the update itself
(``ppo_step``) returns a stats vector in :data:`STATS_FIELDS` order, and an epoch reads the
vectors of all its minibatches back at once and turns each row into a :class:`MinibatchStats`.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs


@attrs.frozen(kw_only=True)
class MinibatchStats:
    """What one PPO minibatch update reports (§6.6), as Python numbers.

    Losses are those of the parameters *before* the update (the forward pass the gradient came
    from). ``loss_entropy`` is the mean entropy (positive); ``kl_divergence`` = mean(old − new
    log-prob), signed; ``grad_norm`` is the global L2 norm before clipping; ``adv_mean`` /
    ``adv_std`` are the mean and population std of the minibatch's advantages (std 0 for one
    element); ``transitions`` is the minibatch length.
    """

    loss_total: float
    loss_policy: float
    loss_value: float
    loss_entropy: float
    loss_bc: float
    clip_fraction: float
    kl_divergence: float
    grad_norm: float
    adv_mean: float
    adv_std: float
    transitions: int


STATS_FIELDS: tuple[str, ...] = tuple(f.name for f in attrs.fields(MinibatchStats))[:-1]
"""The order of the entries of a minibatch update's stats vector (every field but
``transitions``)."""


def stats_from_values(values: Sequence[float], transitions: int) -> MinibatchStats:
    """The :class:`MinibatchStats` of one update from its read-back stats vector."""
    return MinibatchStats(**dict(zip(STATS_FIELDS, values, strict=True)), transitions=transitions)
