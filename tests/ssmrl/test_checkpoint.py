"""ssmrl.checkpoint: bitwise round trips, keep-last-k, metadata, and crashes that never lose the last checkpoint."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ssmrl.checkpoint import Checkpointer

SEEDS = 3


@chex.dataclass(frozen=True)
class TrainState:
    params: dict
    key: jax.Array
    step: jax.Array
    done: jax.Array


def _state(weights: np.ndarray, offset: int = 0) -> TrainState:
    """A [SEEDS]-batched train state: float32 params, uint32 keys, int32 counters, bool flags."""
    return TrainState(
        params={"dense": {"kernel": jnp.asarray(weights), "bias": jnp.full((SEEDS, 2), offset, jnp.float32)}},
        key=jax.random.split(jax.random.PRNGKey(offset), SEEDS),
        step=jnp.arange(SEEDS, dtype=jnp.int32) + offset,
        done=jnp.arange(SEEDS) % 2 == offset % 2,
    )


def _assert_bitwise_equal(restored, expected) -> None:
    assert jax.tree.structure(restored) == jax.tree.structure(expected)
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(expected), strict=True):
        assert isinstance(got, type(want)) and got.dtype == want.dtype and got.shape == want.shape
        assert np.asarray(got).tobytes() == np.asarray(want).tobytes()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    with Checkpointer(tmp_path_factory.mktemp("shared"), keep=2) as checkpointer:
        yield checkpointer


_weights = hnp.arrays(np.float32, (SEEDS, 4, 2), elements=st.floats(width=32) | st.sampled_from([np.nan, -0.0]))


@given(weights=_weights, offset=st.integers(0, 2**20))
def test_round_trip_is_bitwise_exact(shared, weights, offset):
    state = _state(weights, offset)
    step = (shared.latest_step() or 0) + 1
    shared.save(step, state, {"update": step, "config": {"lr": 3e-4, "sizes": [1, 2]}})
    _assert_bitwise_equal(shared.restore(target=state), state)
    _assert_bitwise_equal(shared.restore(step, target=jax.eval_shape(lambda: state)), state)
    assert shared.restore_metadata() == {"update": step, "config": {"lr": 3e-4, "sizes": [1, 2]}}


def test_without_a_target_containers_come_back_as_dicts(shared):
    state = _state(np.ones((SEEDS, 4, 2), np.float32), offset=7)
    shared.save((shared.latest_step() or 0) + 1, state)
    raw = shared.restore()
    assert set(raw) == {"params", "key", "step", "done"}
    np.testing.assert_array_equal(raw["params"]["dense"]["kernel"], state.params["dense"]["kernel"])
    assert raw["key"].dtype == np.uint32 and shared.restore_metadata() == {}


def test_keeps_the_last_k_and_restores_any_kept_step(tmp_path):
    with Checkpointer(tmp_path, keep=2) as checkpointer:
        assert checkpointer.latest_step() is None and checkpointer.all_steps() == []
        for step in (10, 20, 30, 40):
            checkpointer.save(step, _state(np.zeros((SEEDS, 4, 2), np.float32), offset=step), {"update": step})
        assert checkpointer.all_steps() == [30, 40] and checkpointer.latest_step() == 40
        assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["30", "40"]
        target = _state(np.zeros((SEEDS, 4, 2), np.float32))
        assert int(checkpointer.restore(30, target).step[0]) == 30
        assert checkpointer.restore_metadata(30) == {"update": 30}
    with Checkpointer(tmp_path, keep=2) as reopened:
        assert reopened.all_steps() == [30, 40]


def test_missing_checkpoints_and_bad_input_raise_clear_errors(tmp_path):
    checkpointer = Checkpointer(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="no checkpoint in .*run"):
        checkpointer.restore()
    with pytest.raises(FileNotFoundError, match="no checkpoint in .*run"):
        checkpointer.restore_metadata()
    state = _state(np.zeros((SEEDS, 4, 2), np.float32))
    checkpointer.save(5, state)
    with pytest.raises(FileNotFoundError, match=r"step 4 .* saved steps: \[5\]"):
        checkpointer.restore(4)
    with pytest.raises(ValueError, match="after the latest checkpoint"):
        checkpointer.save(5, state)
    with pytest.raises(ValueError, match="JSON-able"):
        checkpointer.save(6, state, {"x": object()})
    with pytest.raises(ValueError, match="raw uint32 keys"):
        checkpointer.save(6, {"key": jax.random.key(0)})
    with pytest.raises(ValueError, match="does not fit the target"):
        checkpointer.restore(target={"params": state.params})
    with pytest.raises(ValueError, match="keep must be >= 1"):
        Checkpointer(tmp_path / "other", keep=0)
    checkpointer.close()


def test_a_crashed_save_never_hides_the_last_checkpoint(tmp_path, monkeypatch):
    good = _state(np.full((SEEDS, 4, 2), 2.0, np.float32), offset=2)
    checkpointer = Checkpointer(tmp_path, keep=1)
    checkpointer.save(1, _state(np.ones((SEEDS, 4, 2), np.float32), offset=1))
    checkpointer.save(2, good, {"update": 2})

    def crash(*args, **kwargs):
        raise OSError("disk gone")

    with monkeypatch.context() as patch:  # the state is written, then writing the metadata fails
        patch.setattr(ocp.handlers.JsonCheckpointHandler, "async_save", crash)
        patch.setattr(ocp.handlers.JsonCheckpointHandler, "save", crash)
        with pytest.raises(OSError, match="disk gone"):
            checkpointer.save(3, _state(np.zeros((SEEDS, 4, 2), np.float32), offset=3), {"update": 3})
    assert any("tmp" in p.name for p in tmp_path.iterdir())  # what the crash left behind
    for opened in (checkpointer, Checkpointer(tmp_path, keep=1)):  # the live one, and one after a restart
        assert opened.all_steps() == [2]
        _assert_bitwise_equal(opened.restore(target=good), good)
        assert opened.restore_metadata() == {"update": 2}
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["2"]  # reopening removed the leftover
    restarted = Checkpointer(tmp_path, keep=1)
    restarted.save(3, good, {"update": 3})
    assert restarted.all_steps() == [3] and restarted.restore_metadata() == {"update": 3}
