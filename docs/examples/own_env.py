"""Bring your own simulation: a two-agent PettingZoo ``ParallelEnv`` captured, saved as a
Townlet capture directory, read back and trained on (docs/migration.md)."""

from __future__ import annotations

import sys
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

import townlet
from townlet.policy.replay import ReplayDataset, ReplayDatasetConfig


class Corridor(ParallelEnv):  # type: ignore[misc]
    """Each agent walks a corridor of 5 cells; reward 1 for reaching the end."""

    metadata: ClassVar[dict[str, str]] = {"name": "corridor_v0"}

    def __init__(self) -> None:
        self.possible_agents = ["ann", "bob"]
        self.agents: list[str] = []

    def observation_space(self, agent: str) -> spaces.Box:
        return spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32)

    def action_space(self, agent: str) -> spaces.Discrete:
        return spaces.Discrete(2)  # 0 = wait, 1 = step forward

    def _obs(self) -> dict[str, np.ndarray]:
        return {a: np.array([self.pos[a] / 4, 1.0], np.float32) for a in self.agents}

    def reset(self, seed: int | None = None, options: Any = None) -> tuple[dict, dict]:
        self.agents = list(self.possible_agents)
        self.pos = dict.fromkeys(self.agents, 0)
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, int]) -> tuple[dict, ...]:
        for agent, action in actions.items():
            self.pos[agent] = min(4, self.pos[agent] + int(action))
        obs = self._obs()
        done = {a: self.pos[a] == 4 for a in self.agents}
        rewards = {a: float(done[a]) for a in self.agents}
        truncated = dict.fromkeys(self.agents, False)
        self.agents = [a for a in self.agents if not done[a]]
        return obs, rewards, done, truncated, {a: {} for a in done}


def main(out: str) -> None:
    buffer = townlet.capture_rollout(Corridor(), "random", ticks=40, seed=0)
    townlet.save_rollout(buffer, out)  # npz/json per agent + manifest + metrics (reference layout)
    config = ReplayDatasetConfig.from_capture_dir(
        out, batch_size=2, require_conflict_features=False
    )
    run = townlet.train_ppo(ReplayDataset(config), epochs=2, seed=0)
    print(len(buffer.samples), "samples;", "loss_total", round(run.result.loss_total, 4))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/corridor")
