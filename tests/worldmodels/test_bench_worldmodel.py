"""scripts/bench_worldmodel.py: list arguments, one JSON line per trained run, the deadline, bad names refused.

Training itself is stubbed (`bench_one`): these check the driver, the model is tested in test_s4wm.py.
"""

import json
import math

import pytest

from tests.scripts import load_script


@pytest.fixture
def bench(monkeypatch):
    """The script with `bench_one` replaced by a stub that records its calls and returns a fixed row."""
    module = load_script("bench_worldmodel")
    calls = []

    def fake(backbone, suite, args):
        calls.append((backbone, suite[0], args.image_size))
        return dict(mse=0.01, psnr=20.0, reward_accuracy=1.0, rewarded_accuracy=math.nan, context_reward_accuracy=0.5,
                    context_rewarded_accuracy=math.nan, **{"mse@1": 0.02}, train_fps=1.0, imag_fps=2.0,
                    context=suite[1], horizon=suite[2], final_loss=3.0)

    monkeypatch.setattr(module, "bench_one", fake)
    module.calls = calls
    return module


def test_lists_and_jsonl(bench, tmp_path):
    """Comma- and space-separated lists both work; every (suite, backbone) run appends one JSON line with every
    row field (NaN as null) plus its names and settings, suite-major."""
    path = tmp_path / "runs" / "wm.jsonl"
    bench.main(["--quick", "--suites", "four_rooms,ten_rooms", "--backbones", "s4", "gru", "--jsonl", str(path)])
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["suite"], r["backbone"]) for r in rows] == [
        ("four_rooms", "s4"), ("four_rooms", "gru"), ("ten_rooms", "s4"), ("ten_rooms", "gru")]
    assert [c[1] for c in bench.calls] == ["memory_wm/FourRooms"] * 2 + ["memory_wm/TenRooms"] * 2
    assert all(c[2] == 16 for c in bench.calls)  # --quick images
    row = rows[0]
    assert row["rewarded_accuracy"] is None and row["context_reward_accuracy"] == 0.5 and row["paper_mse"] is None
    assert row["env"] == "memory_wm/FourRooms" and row["context"] == 30 and row["settings"]["quick"] is True
    assert {"mse", "psnr", "mse@1", "train_fps", "imag_fps", "final_loss", "seconds", "device"} <= set(row)


def test_deadline_starts_nothing_new(bench, tmp_path, capsys):
    bench.main(["--quick", "--suites", "two_rooms", "--backbones", "s4,gru", "--jsonl", str(tmp_path / "x.jsonl"),
                "--deadline-min", "0"])
    assert bench.calls == [] and not (tmp_path / "x.jsonl").exists()
    assert "not started: s4/two_rooms gru/two_rooms" in capsys.readouterr().out


def test_bad_names_refused(bench, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--suites", "four_rooms,nine_rooms"])
    err = capsys.readouterr().err
    assert "unknown ['nine_rooms']" in err and "ten_rooms_teleport" in err
    with pytest.raises(SystemExit):
        bench.main(["--backbones", "lstmx"])
    assert "unknown ['lstmx']" in capsys.readouterr().err


def test_paper_numbers_name_known_runs(bench):
    assert all(b in bench.BACKBONES and s in bench.SUITES for b, s in bench.PAPER_MSE)
