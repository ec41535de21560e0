"""Distracting Memory: the reward-prediction suite (a colour cue must be remembered through distractors).

An `arena x arena` room (walls around) holds `num_goals` goal squares of distinct colours at random cells. At
step 0 only, the image border shows the colour of the target goal (the cue). Every step, `num_distractors`
cells (not goals, not the agent) are drawn in random goal colours at random places: they carry no reward
and change every step. Reward: +1 whenever the agent steps onto the target goal from another cell, 0
otherwise (other goals give nothing). Predicting the reward therefore needs the cue from step 0.
Observation: the whole arena top-down (agent white), `[image_size, image_size, 3]`. Episode: 500 steps.
Data policy: uniformly random moves.

What is the paper's (S4WM, Deng, Park, Ahn 2023; checked on its project page only): the suite name, that it
tests reward prediction both while observing the sequence and in imagination, and that predicting the reward
needs tracking the agent's position. Ours, not checked against the paper's body: the cue, the distractors,
the arena and goal count, the 500-step episodes, C = 100 / H = 400 and the rendering.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from ssmrl.envs.memory_wm.grid import (
    AGENT,
    FLOOR,
    MOVES,
    NUM_COLOURS,
    NUM_FIXED,
    WALL,
    GridMemoryEnv,
    GridParams,
    check_int,
    random_cells,
    render,
)


@chex.dataclass(frozen=True)
class DistractingMemoryState:
    """goals `[G, 2]` cells; goal_colours `[G]` palette indices; target: index of the rewarded goal;
    distractors `[D, 2]` cells and distractor_colours `[D]` shown this step; pos `[2]`; time."""

    goals: jax.Array
    goal_colours: jax.Array
    target: jax.Array
    distractors: jax.Array
    distractor_colours: jax.Array
    pos: jax.Array
    time: jax.Array


class DistractingMemory(GridMemoryEnv):
    """See the module docstring."""

    def __init__(self, arena: int = 7, num_goals: int = 4, num_distractors: int = 3, image_size: int = 64,
                 max_steps: int = 500):
        super().__init__()
        self.arena = check_int("arena", arena, 3)
        self.num_goals = check_int("num_goals", num_goals, 2)
        self.num_distractors = check_int("num_distractors", num_distractors, 0)
        if self.num_goals > NUM_COLOURS:
            raise ValueError(f"num_goals must be <= {NUM_COLOURS} (distinct colours), got {num_goals}")
        if self.num_goals + self.num_distractors + 1 > self.arena**2:
            raise ValueError(f"{num_goals} goals + {num_distractors} distractors + agent exceed the {arena}^2 arena")
        self._set_sizes(image_size, max_steps)
        self.side = self.arena + 2

    def _interior(self):
        r, c = jnp.arange(self.side)[:, None], jnp.arange(self.side)[None, :]
        return (r > 0) & (r < self.side - 1) & (c > 0) & (c < self.side - 1)

    def _distract(self, key, goals, pos):
        """Fresh distractor cells and colours, away from goals and the agent."""
        k_pos, k_col = jax.random.split(key)
        free = self._interior().at[goals[:, 0], goals[:, 1]].set(False).at[pos[0], pos[1]].set(False)
        return random_cells(k_pos, free, self.num_distractors), jax.random.randint(
            k_col, (self.num_distractors,), 0, self.num_goals
        )

    def reset_env(self, key, params: GridParams):
        k_cells, k_col, k_target, k_dis = jax.random.split(key, 4)
        cells = random_cells(k_cells, self._interior(), self.num_goals + 1)
        goals, pos = cells[:-1], cells[-1]
        goal_colours = NUM_FIXED + jax.random.permutation(k_col, NUM_COLOURS)[: self.num_goals]
        distractors, distractor_colours = self._distract(k_dis, goals, pos)
        state = DistractingMemoryState(
            goals=goals, goal_colours=goal_colours, target=jax.random.randint(k_target, (), 0, self.num_goals),
            distractors=distractors, distractor_colours=goal_colours[distractor_colours], pos=pos, time=jnp.int32(0),
        )
        return self.get_obs(state), state

    def step_env(self, key, state: DistractingMemoryState, action, params: GridParams):
        moved = state.pos + MOVES[action]
        pos = jnp.where(self._interior()[moved[0], moved[1]], moved, state.pos)
        on_target = jnp.all(pos == state.goals[state.target])
        reward = (on_target & jnp.any(pos != state.pos)).astype(jnp.float32)
        distractors, colours = self._distract(key, state.goals, pos)
        state = state.replace(pos=pos, distractors=distractors, distractor_colours=state.goal_colours[colours],
                              time=state.time + 1)
        return self.get_obs(state), state, reward, jnp.bool_(False), {}

    def get_obs(self, state: DistractingMemoryState, params=None, key=None):
        """Top-down arena with the cue border at step 0: `[image_size, image_size, 3]` float32."""
        border = jnp.where(state.time == 0, state.goal_colours[state.target], WALL)
        cells = jnp.where(self._interior(), FLOOR, border)
        cells = cells.at[state.goals[:, 0], state.goals[:, 1]].set(state.goal_colours)
        cells = cells.at[state.distractors[:, 0], state.distractors[:, 1]].set(state.distractor_colours)
        return render(cells.at[state.pos[0], state.pos[1]].set(AGENT), self.image_size)
