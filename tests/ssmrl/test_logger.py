"""ssmrl.logger: CSV rows, TensorBoard scalars, SPS, progress line, resume truncation, JSON and figures."""

import io
import json
import math
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tensorboardX.proto import event_pb2

from ssmrl.logger import FIXED_COLUMNS, MetricsLogger, human, plot_curves, read_metrics, seed_band


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _metrics(update: int, num_seeds: int, offset: float = 0.0) -> dict[str, np.ndarray]:
    seeds = np.arange(num_seeds, dtype=np.float32)
    return {"loss": (1.0 / update + seeds).astype(np.float32), "episode_return": update + seeds / 10 + offset}


def _run(out_dir, updates, num_seeds=2, start=0, total=None, offset=0.0, **kwargs) -> MetricsLogger:
    logger = MetricsLogger(out_dir, total or updates[-1], steps_per_update=64, num_seeds=num_seeds, start_update=start,
                           progress=False, **kwargs)
    with logger:
        for update in updates:
            logger.log(update, _metrics(update, num_seeds, offset))
    return logger


def _events(tb_dir):
    """The Event protos of the TFRecord files in `tb_dir` (records: length u64, crc u32, proto, crc u32)."""
    for path in sorted(tb_dir.iterdir()):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            yield event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4


def _tensorboard_scalars(tb_dir) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)]."""
    scalars = {}
    for event in _events(tb_dir):
        for value in event.summary.value:
            scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_csv_rows_json_and_figure(tmp_path):
    _run(tmp_path, [1, 2, 3])
    table = read_metrics(tmp_path)
    assert list(table) == [*FIXED_COLUMNS, "episode_return", "loss"]
    np.testing.assert_array_equal(table["update"], [1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(table["env_steps"], 64 * table["update"])
    np.testing.assert_array_equal(table["seed"], [0, 1] * 3)
    expected = np.concatenate([_metrics(u, 2)["loss"] for u in (1, 2, 3)])
    np.testing.assert_array_equal(table["loss"].astype(np.float32), expected)  # float32 values written exactly
    assert np.isnan(table["sps"][:2]).all() and (table["sps"][2:] > 0).all()
    assert np.all(np.diff(table["wall_time_s"]) >= 0)
    rows = json.loads((tmp_path / "metrics.json").read_text())
    assert len(rows) == 6 and rows[0]["sps"] is None and rows[5]["update"] == 3 and rows[5]["seed"] == 1
    assert rows[3]["episode_return"] == pytest.approx(table["episode_return"][3])
    assert (tmp_path / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_tensorboard_mean_and_per_seed_tags_at_env_steps(tmp_path):
    _run(tmp_path, [1, 2], num_seeds=3)
    scalars = _tensorboard_scalars(tmp_path / "tb")
    assert {"loss", "loss/seed_0", "loss/seed_2", "episode_return", "sps"} <= set(scalars)
    steps, values = zip(*scalars["loss"], strict=True)
    assert steps == (64, 128)
    np.testing.assert_allclose(values, [_metrics(u, 3)["loss"].mean() for u in (1, 2)], rtol=1e-6)
    assert scalars["loss/seed_2"][1] == (128, pytest.approx(2.5))
    assert [step for step, _ in scalars["sps"]] == [128]  # the first interval includes compilation
    _run(tmp_path / "one", [1], num_seeds=1)
    assert "loss/seed_0" not in _tensorboard_scalars(tmp_path / "one" / "tb")


def test_resume_truncates_to_the_checkpoint_and_continues(tmp_path):
    _run(tmp_path, [1, 2, 3, 4, 5])
    first = read_metrics(tmp_path)
    with (tmp_path / "metrics.csv").open("a") as f:
        f.write("2")  # a row cut short by a crash (it would read as update 2)
    _run(tmp_path, [4, 5, 6], start=3, total=6, offset=100.0)
    table = read_metrics(tmp_path)
    np.testing.assert_array_equal(table["update"], np.repeat([1, 2, 3, 4, 5, 6], 2))
    np.testing.assert_array_equal(table["episode_return"][:6], first["episode_return"][:6])
    assert (table["episode_return"][6:] > 100).all()  # rows after the checkpoint come from the resumed run
    assert table["wall_time_s"][6] >= first["wall_time_s"][5] and np.isnan(table["sps"][6])
    starts = [e.step for e in _events(tmp_path / "tb") if e.session_log.status == event_pb2.SessionLog.START]
    assert starts == [3 * 64 + 1]  # TensorBoard hides the first run's events after the checkpoint


def test_fresh_run_replaces_an_old_csv(tmp_path):
    _run(tmp_path, [1, 2, 3], tensorboard=False)
    _run(tmp_path, [1], tensorboard=False)
    np.testing.assert_array_equal(read_metrics(tmp_path)["update"], [1, 1])


def test_progress_line_on_a_terminal_is_redrawn_and_throttled(tmp_path):
    stream = _Terminal()
    logger = MetricsLogger(tmp_path, 400, steps_per_update=3000, num_seeds=1, tensorboard=False, stream=stream)
    for update in range(1, 401):
        logger.log(update, {"episode_return": np.array([12.5])})
    logger.close()
    logger.close()
    text = stream.getvalue()
    draws = text.split("\r")[1:]
    assert 2 <= len(draws) < 100 and text.endswith("\n") and text.count("\n") == 1
    assert "400/400 updates" in draws[-1] and "1.2M env steps" in draws[-1] and "return 12.5" in draws[-1]
    assert "[####################]" in draws[-1] and "steps/s" in draws[-1]


def test_progress_without_a_terminal_prints_every_five_percent(tmp_path):
    stream = io.StringIO()
    with MetricsLogger(tmp_path, 100, 10, num_seeds=2, start_update=40, tensorboard=False, stream=stream) as log:
        for update in range(41, 101):
            log.log(update, {"loss": np.zeros(2)})
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and len(lines) == 12
    assert lines[0].startswith("[#########-") and "45/100" in lines[0] and "100/100" in lines[-1]


@pytest.mark.parametrize(("count", "text"), [(950, "950"), (12_345, "12.3K"), (1_200_000, "1.2M"), (3e9, "3.0B")])
def test_human_counts(count, text):
    assert human(count) == text


def test_bad_input_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="num_seeds must be >= 1, got 0"):
        MetricsLogger(tmp_path, 10, 1, num_seeds=0)
    with pytest.raises(ValueError, match="start_update"):
        MetricsLogger(tmp_path, 10, 1, num_seeds=1, start_update=11)
    with MetricsLogger(tmp_path, 10, 1, num_seeds=2, tensorboard=False, progress=False) as logger:
        with pytest.raises(ValueError, match=r"'loss' has shape \(3,\); expected \[num_seeds\] = \(2,\)"):
            logger.log(1, {"loss": np.zeros(3)})
        with pytest.raises(ValueError, match="clash"):
            logger.log(1, {"sps": np.zeros(2)})
        logger.log(1, {"loss": np.zeros(2)})
        with pytest.raises(ValueError, match=r"\['entropy', 'loss'\] differ"):
            logger.log(2, {"loss": np.zeros(2), "entropy": np.zeros(2)})
    with pytest.raises(RuntimeError, match="closed"):
        logger.log(2, {"loss": np.zeros(2)})


def test_plot_curves_overlays_runs(tmp_path):
    _run(tmp_path / "s5", [1, 2, 3], tensorboard=False)
    _run(tmp_path / "gru", [1, 2], tensorboard=False)
    out = tmp_path / "compare.png"
    plot_curves([tmp_path / "s5", tmp_path / "gru" / "metrics.csv"], out, title="memory")
    assert out.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="2 runs"):
        plot_curves([tmp_path / "s5", tmp_path / "gru"], out, labels=["one"])
    with pytest.raises(KeyError, match="'nope'.*'episode_return', 'loss'"):
        plot_curves([tmp_path / "s5"], out, metric="nope")
    with pytest.raises(FileNotFoundError, match="missing"):
        plot_curves([tmp_path / "missing"], out)


@given(
    values=hnp.arrays(np.float64, st.integers(1, 12), elements=st.floats(-1e6, 1e6) | st.just(math.nan)),
    data=st.data(),
)
def test_seed_band_matches_a_per_step_reduction(values, data):
    steps = data.draw(hnp.arrays(np.int64, values.shape, elements=st.integers(0, 3)))
    got_steps, mean, low, high = seed_band({"env_steps": steps, "x": values}, "x")
    np.testing.assert_array_equal(got_steps, np.unique(steps))
    for i, step in enumerate(got_steps):
        chosen = values[steps == step]
        chosen = chosen[~np.isnan(chosen)]
        if chosen.size == 0:
            assert np.isnan([mean[i], low[i], high[i]]).all()
        else:
            assert mean[i] == pytest.approx(chosen.mean(), rel=1e-9, abs=1e-6)
            assert (low[i], high[i]) == (chosen.min(), chosen.max())
