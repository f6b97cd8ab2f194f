"""The error types townlet raises.

Every error caused by bad input is a ``ValueError`` subclass whose message names the file
(when there is one), the field, and what was expected; the CLI turns these into a one-line
message and exit status 2.
"""

from __future__ import annotations


class TownletError(Exception):
    """Base class of every townlet-specific error."""


class TownletInputError(TownletError, ValueError):
    """Bad input: a file, a field or an argument that does not meet its contract."""


class ConfigError(TownletInputError):
    """A configuration file or record is invalid (the message names the key path)."""


class DTOValidationError(TownletInputError):
    """A result record (DTO) was given a value outside its bounds or an unknown key."""


class ReplayDataError(TownletInputError):
    """A replay sample, sidecar or manifest is missing, malformed or inconsistent."""


class TelemetryError(TownletInputError):
    """A telemetry line is malformed (the message starts with ``path:line:``)."""


class CheckpointError(TownletInputError):
    """A checkpoint file is unreadable or does not match the requested network spec."""


class RolloutError(TownletInputError):
    """A rollout capture request is invalid: ticks <= 0, no agents, an environment whose action
    space is not discrete or whose observation is not flat, an unknown environment id, or a
    policy that does not fit the environment."""


class PromotionError(TownletInputError):
    """A promotion state file, anneal summary or promotion request is invalid or not allowed."""


class TorchNotAvailableError(TownletError, ImportError):
    """A strategy that computes with torch was called where torch is not installed."""

    def __init__(self, feature: str = "this feature") -> None:
        super().__init__(
            f"{feature} needs PyTorch, which is not installed; "
            "install it with: pip install 'townlet[torch]'"
        )


class CompileFallbackWarning(RuntimeWarning):
    """The compiled minibatch update (the ``compile`` setting) is unavailable or failed; the
    update runs eagerly from now on, with the same results. Issued once per run."""


class TrainingFailedError(TownletError, RuntimeError):
    """A training run failed (non-finite values, a guardrail the user asked to fail on)."""


class CaptureWriteError(TrainingFailedError):
    """Writing a capture directory failed midway (a full disk, an I/O error): a failed run (the
    CLI exits 1). Nothing of the new capture is left; an older capture there is intact."""


class NonFiniteTrainingError(TrainingFailedError, ValueError):
    """Training produced NaN/Inf (advantages, returns, their std, or a loss).

    A failed run (the CLI exits 1), and a ``ValueError`` as in the reference, whose messages
    (``PPO advantages contained NaN/inf (dataset=<label>, batch=<i>)``) it keeps.
    """


class ShortFeatureNamesWarning(UserWarning):
    """A replay sidecar's ``feature_names`` list is shorter than the feature width.

    The file is read (the reference accepted such lists) and written back unchanged; the
    warning says which columns have no name.
    """
