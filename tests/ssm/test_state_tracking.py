"""scripts/state_tracking.py: the tasks' sequences and labels against plain Python, the rows of a tiny CPU run,
the core specs (looked up in the registry; bad ones refused before anything compiles)."""

import json

import jax
import numpy as np
import pytest

from ssmrl.ssm import CORES
from tests.scripts import load_script

ST = load_script("state_tracking")
SYMBOLS = {1: "+", 2: "-", 3: "*"}


def real_tokens(tokens, resets, row):
    """The row's tokens from its reset on, after checking that everything before is padding."""
    start = int(np.argmax(resets[:, row]))
    assert resets[start, row] and resets[:, row].sum() == 1 and np.all(tokens[:start, row] == ST.PAD)
    return [int(t) for t in tokens[start:, row]]


@pytest.mark.parametrize("lengths", [(3, 40), (40, 256)])
def test_parity_sequences(lengths):
    tokens, resets, labels = map(np.asarray, ST.parity_batch(jax.random.key(0), 64, lengths))
    assert tokens.shape == (lengths[1] - 1, 64)
    reads = []
    for row in range(64):
        seq = real_tokens(tokens, resets, row)
        assert set(seq) <= {1, 2} and labels[row] == sum(t == 2 for t in seq) % 2
        reads.append(len(seq))
    assert lengths[0] - 1 <= min(reads) and max(reads) <= lengths[1] - 1 and len(set(reads)) > 5
    assert 0 < labels.mean() < 1


@pytest.mark.parametrize("lengths", [(3, 40), (40, 256)])
def test_arithmetic_sequences_evaluate_with_precedence(lengths):
    """Decoded to "n op n ... =", evaluated by Python (* before + and -) mod 5: the label. n = len + 1 is odd, from
    2 ceil(n_min / 2) - 1 (39 for 40, as the authors' code) to n_max."""
    tokens, resets, labels = map(np.asarray, ST.arithmetic_batch(jax.random.key(1), 64, lengths))
    ops_seen = set()
    for row in range(64):
        seq = real_tokens(tokens, resets, row)
        n = len(seq) + 1
        assert seq[-1] == ST.EQUALS and n % 2 == 1 and 2 * ((lengths[0] + 1) // 2) - 1 <= n <= lengths[1]
        numbers, ops = seq[:-1:2], seq[1:-1:2]
        assert all(5 <= t <= 9 for t in numbers) and all(t in SYMBOLS for t in ops)
        ops_seen |= set(ops)
        expression = " ".join(str(t - 5) if i % 2 == 0 else SYMBOLS[t] for i, t in enumerate(seq[:-1]))
        assert labels[row] == eval(expression) % 5, expression  # noqa: S307 - digits and + - * only
    assert ops_seen == {1, 2, 3} and len(set(labels.tolist())) == 5


def test_scaled_accuracy():
    assert ST.scaled(0.5, 2) == 0.0 and ST.scaled(1.0, 5) == 1.0 and ST.scaled(0.6, 5) == pytest.approx(0.5)


def test_default_cores_and_specs():
    """Defaults: the registered cores of the list, with a [-1,1] variant where the core has the option (not S5)."""
    cores = ST.default_cores()
    assert {"mamba2", "mamba2:eigenvalue_range=[-1,1]", "lru:eigenvalue_range=[-1,1]", "s5", "gru"} <= set(cores)
    assert "s5:eigenvalue_range=[-1,1]" not in cores and all(c.split(":")[0] in CORES for c in cores)
    assert ST.parse_core("mamba2:eigenvalue_range=[-1,1]:d_state=8") == (
        "mamba2", {"eigenvalue_range": [-1, 1], "d_state": 8})
    assert ST.build_core("mamba2:eigenvalue_range=[-1,1]", 32, 1).eigenvalue_range == [-1, 1]


@pytest.mark.parametrize(
    ("spec", "message"),
    [("nocore", "unknown core 'nocore'"), ("gru:width=3", "has no option"), ("mamba2:d_state", "KEY=VALUE"),
     ("lru:eigenvalue_range=[0,2]", "accepted: ('[0,1]', '[-1,1]')")],
)
def test_bad_core_specs_refused(spec, message, capsys):
    with pytest.raises(SystemExit):
        ST.main(["--tiny", "--cores", "gru", spec])
    assert message in capsys.readouterr().err


def test_tiny_run_rows(tmp_path):
    """A tiny CPU run of one core and two seeds: one jsonl row with the scores, their provenance and settings."""
    path = tmp_path / "runs" / "st.jsonl"
    rows = ST.main(["--tiny", "--tasks", "parity", "--cores", "gru", "--seeds", "0", "3", "--out", str(path)])
    (row,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert row == json.loads(json.dumps(rows[0]))
    assert row["task"] == "parity" and row["core"] == "gru" and row["seeds"] == [0, 3]
    assert len(row["scaled_seeds"]) == len(row["accuracy_seeds"]) == 2 and row["test_sequences"] == 32
    scores = [ST.scaled(a, 2) for a in row["accuracy_seeds"]]
    assert row["scaled_seeds"] == pytest.approx(scores, abs=1e-3)
    assert row["scaled_best"] == pytest.approx(max(scores), abs=1e-3)
    assert row["scaled_mean"] == pytest.approx(np.mean(scores), abs=1e-3)
    assert all(0 <= a <= 1 for a in row["accuracy_seeds"] + row["train_accuracy_seeds"])
    assert {"device", "date", "jax", "command", "parameters", "seconds"} <= set(row)
    assert row["command"].startswith("python scripts/state_tracking.py --tiny") and row["jax"] == jax.__version__
    assert row["settings"]["steps"] == 30 and row["settings"]["train_lengths"] == [3, 10]
