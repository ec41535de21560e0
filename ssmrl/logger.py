"""Training metrics, streamed while training runs: CSV rows, TensorBoard scalars, a progress line, and at the end
`metrics.json` and a learning-curve figure.

Files in `out_dir`:
- `metrics.csv`: one row per (update, seed). Columns `update, env_steps, seed, wall_time_s, sps`, then the metric
  names sorted. `env_steps` counts one seed's steps (`update * steps_per_update`); `sps` counts all seeds' steps
  per wall-clock second since the previous `log` call and is NaN in the first row of a run (or of a resumed run),
  whose interval includes compilation.
- `tb/`: TensorBoard scalars at global step `env_steps`: `<name>` (mean over seeds), `<name>/seed_<i>` (each
  seed, when there are several) and `sps`.
- `metrics.json` (on close): the CSV as a JSON list of row objects (`{"update": 1, "env_steps": 128, ...}`; NaN
  written as null), e.g. `pandas.DataFrame(json.load(f))`.
- `learning_curve.png` (on close): the `plot_metrics` against env steps, mean over seeds with a min/max band.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import numpy as np
from matplotlib.figure import Figure
from tensorboardX import SummaryWriter

from ssmrl.closing import Closing

FIXED_COLUMNS = ("update", "env_steps", "seed", "wall_time_s", "sps")
_INT_COLUMNS = ("update", "env_steps", "seed")


class MetricsLogger(Closing):
    """Writes the metrics of one training run (all its seeds) to `out_dir`; see the module docstring.

    With `start_update = k > 0` (resuming from the checkpoint of update k) the rows of `metrics.csv` after update
    k are dropped, the wall clock continues from the last kept row, and TensorBoard hides its events after k.
    A context manager; `close()` may be called more than once.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        total_updates: int,
        steps_per_update: int,
        num_seeds: int,
        start_update: int = 0,
        tensorboard: bool = True,
        progress: bool = True,
        stream: IO[str] = sys.stderr,
        plot_metrics: Sequence[str] = ("episode_return",),
        title: str | None = None,
    ):
        for name, value, low in (("total_updates", total_updates, 1), ("steps_per_update", steps_per_update, 1),
                                 ("num_seeds", num_seeds, 1), ("start_update", start_update, 0)):
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if start_update > total_updates:
            raise ValueError(f"start_update ({start_update}) is past total_updates ({total_updates})")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.out_dir / "metrics.csv"
        self.steps_per_update, self.num_seeds = steps_per_update, num_seeds
        self.plot_metrics, self.title = tuple(plot_metrics), title
        self._columns, wall_offset = _truncate_csv(self.csv_path, start_update)
        self._file = open(self.csv_path, "a", newline="")  # open for the whole run; rows are flushed as written
        self._csv = csv.writer(self._file)
        purge = start_update * steps_per_update + 1 if start_update else None
        self._tb = SummaryWriter(str(self.out_dir / "tb"), purge_step=purge, flush_secs=10) if tensorboard else None
        self._progress = _Progress(stream, total_updates, start_update) if progress else None
        self._t0 = time.perf_counter() - wall_offset
        self._previous: tuple[int, float] | None = None  # (update, time) of the last `log`
        self._closed = False

    def log(self, update: int, metrics: Mapping[str, np.ndarray]) -> None:
        """Record update `update` (1-based: updates done so far); each metric has shape [num_seeds]."""
        if self._closed:
            raise RuntimeError(f"MetricsLogger for {str(self.out_dir)!r} is closed")
        now = time.perf_counter()
        names = sorted(metrics)
        values = np.empty((self.num_seeds, len(names)))  # [num_seeds, num_metrics]
        for i, name in enumerate(names):
            values[:, i] = self._check(name, metrics[name])
        if self._columns is None:
            clash = sorted(set(names) & set(FIXED_COLUMNS))
            if clash:
                raise ValueError(f"metric names {clash} clash with the fixed columns {list(FIXED_COLUMNS)}")
            self._columns = (*FIXED_COLUMNS, *names)
            self._csv.writerow(self._columns)
        elif list(self._columns[len(FIXED_COLUMNS):]) != names:
            raise ValueError(f"metrics {names} differ from the columns of {str(self.csv_path)!r}: "
                             f"{list(self._columns[len(FIXED_COLUMNS):])}")
        steps = update * self.steps_per_update
        sps = math.nan
        if self._previous is not None:
            done, then = self._previous
            sps = (update - done) * self.num_seeds * self.steps_per_update / max(now - then, 1e-9)
        self._previous = (update, now)
        wall = now - self._t0
        for seed in range(self.num_seeds):
            self._csv.writerow([update, steps, seed, f"{wall:.6f}", f"{sps:.9g}", *(f"{v:.9g}" for v in values[seed])])
        self._file.flush()
        means = dict(zip(names, values.mean(axis=0), strict=True))
        if self._tb is not None:
            self._write_tensorboard(steps, names, values, means, sps)
        if self._progress is not None:
            self._progress.show(update, steps, sps, means.get("episode_return"))

    def close(self) -> None:
        """Finish the progress line, close the files, write `metrics.json` and `learning_curve.png`; every step is
        tried, then the first error is raised."""
        if self._closed:
            return
        self._closed = True
        errors = []
        for step in (self._progress and self._progress.close, self._file.close, self._tb and self._tb.close,
                     self._write_summaries):
            try:
                if step:
                    step()
            except Exception as err:
                errors.append(err)
        if errors:
            raise errors[0]

    def _write_summaries(self) -> None:
        table = read_metrics(self.csv_path)
        _write_json(table, self.out_dir / "metrics.json")
        panels = [(m, [(None, table)]) for m in self.plot_metrics if m in table]
        if panels and len(table["update"]):
            _plot(panels, self.out_dir / "learning_curve.png", self.title)

    def _check(self, name: str, value) -> np.ndarray:
        value = np.asarray(value, dtype=np.float64)
        if value.shape != (self.num_seeds,):
            raise ValueError(f"metric {name!r} has shape {value.shape}; expected [num_seeds] = ({self.num_seeds},)")
        return value

    def _write_tensorboard(self, steps: int, names: list[str], values, means: dict, sps: float) -> None:
        for i, name in enumerate(names):
            self._tb.add_scalar(name, means[name], steps)
            if self.num_seeds > 1:
                for seed in range(self.num_seeds):
                    self._tb.add_scalar(f"{name}/seed_{seed}", values[seed, i], steps)
        if math.isfinite(sps):
            self._tb.add_scalar("sps", sps, steps)


def read_metrics(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The columns of a `metrics.csv` (or of the one in run directory `path`): name -> [rows] (empty: `{}`)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics file {str(path)!r}")
    header, rows = _read_rows(path)
    if not header:
        return {}
    body = np.array(rows, dtype=np.float64).reshape(len(rows), len(header))
    return {name: body[:, i].astype(np.int64) if name in _INT_COLUMNS else body[:, i] for i, name in enumerate(header)}


def plot_curves(
    csv_paths_or_runs: Sequence[str | os.PathLike],
    out_png: str | os.PathLike,
    metric: str = "episode_return",
    labels: Sequence[str] | None = None,
    title: str | None = None,
) -> None:
    """Overlay `metric` against env steps for several runs (each a `metrics.csv` or a run directory holding one).

    Each run: mean over seeds with a min/max band. `labels` default to the run directory names.
    """
    paths = [Path(p) for p in csv_paths_or_runs]
    if not paths:
        raise ValueError("plot_curves needs at least one metrics.csv or run directory")
    labels = [(p if p.is_dir() else p.parent).name for p in paths] if labels is None else list(labels)
    if len(labels) != len(paths):
        raise ValueError(f"got {len(labels)} labels for {len(paths)} runs")
    tables = [read_metrics(p) for p in paths]
    for path, table in zip(paths, tables, strict=True):
        if metric not in table:
            metrics = [c for c in table if c not in FIXED_COLUMNS]
            raise KeyError(f"metric {metric!r} is not in {str(path)!r}; it has {metrics}")
    _plot([(metric, list(zip(labels, tables, strict=True)))], out_png, title)


def seed_band(table: Mapping[str, np.ndarray], metric: str) -> tuple[np.ndarray, ...]:
    """(env_steps [U], mean [U], min [U], max [U]) of `metric` over seeds, ignoring NaN (all-NaN -> NaN)."""
    steps, inverse = np.unique(table["env_steps"], return_inverse=True)
    values = np.asarray(table[metric], dtype=np.float64)
    valid = ~np.isnan(values)
    count = np.bincount(inverse, weights=valid, minlength=len(steps))
    total = np.bincount(inverse, weights=np.where(valid, values, 0.0), minlength=len(steps))
    low, high = np.full(len(steps), np.inf), np.full(len(steps), -np.inf)
    np.fmin.at(low, inverse, values)
    np.fmax.at(high, inverse, values)
    empty = count == 0
    mean = np.where(empty, np.nan, total / np.maximum(count, 1))
    return steps, mean, np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def _plot(panels: Sequence[tuple[str, Sequence[tuple[str | None, Mapping]]]], out_png, title: str | None) -> None:
    """One subplot per (metric, [(label, table), ...]); each table drawn as its seed mean with a min/max band."""
    fig = Figure(figsize=(6.4, 3.6 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (metric, runs) in zip(axes, panels, strict=True):
        for label, table in runs:
            steps, mean, low, high = seed_band(table, metric)
            (line,) = ax.plot(steps, mean, label=label)
            ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_xlabel("env steps")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if any(label is not None for label, _ in runs):
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.savefig(out_png, dpi=120)


def _write_json(table: Mapping[str, np.ndarray], path: Path) -> None:
    names = list(table)
    rows = [
        {name: (None if math.isnan(v) else v) for name, v in zip(names, row, strict=True)}
        for row in zip(*(table[name].tolist() for name in names), strict=True)
    ]
    path.write_text(json.dumps(rows, allow_nan=False))


def _truncate_csv(path: Path, start_update: int) -> tuple[tuple[str, ...] | None, float]:
    """Prepare `metrics.csv` for a run starting after `start_update`: (its header or None, wall time to continue).

    A fresh run (0) starts an empty file; a resumed one keeps the rows with update <= start_update.
    """
    if start_update == 0 or not path.is_file():
        path.write_text("")
        return None, 0.0
    header, rows = _read_rows(path)
    if not header:
        return None, 0.0
    kept = [r for r in rows if int(r[0]) <= start_update]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows([header, *kept])
    os.replace(tmp, path)
    wall = max((float(r[header.index("wall_time_s")]) for r in kept), default=0.0)
    return tuple(header), wall


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """(header, complete rows) of a CSV file; a row cut short by a crash is dropped."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0] if rows else []
    return header, [r for r in rows[1:] if len(r) == len(header)]


class _Progress:
    """One status line: redrawn in place with `\\r` on a terminal (at most ~10 times a second), else a plain
    line every ~5% of the run."""

    def __init__(self, stream: IO[str], total: int, start: int):
        self.stream, self.total = stream, total
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._last_draw = -math.inf
        self._last_bucket = start * 20 // total
        self._width = 0

    def show(self, update: int, env_steps: int, sps: float, episode_return: float | None) -> None:
        now = time.perf_counter()
        bucket = update * 20 // self.total
        if self.tty and not (update >= self.total or now - self._last_draw >= 0.1):
            return
        if not self.tty and bucket <= self._last_bucket:
            return
        self._last_draw, self._last_bucket = now, bucket
        filled = min(20, round(20 * update / self.total))
        line = (f"[{'#' * filled}{'-' * (20 - filled)}] {update}/{self.total} updates | "
                f"{human(env_steps)} env steps | {'-' if math.isnan(sps) else human(sps)} steps/s")
        if episode_return is not None:
            line += f" | return {episode_return:.4g}"
        if self.tty:
            self._width = max(self._width, len(line))
            self.stream.write("\r" + line.ljust(self._width))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()


def human(x: float) -> str:
    """A count in 4 characters or so: 950, 12.3K, 1.2M, 3.0B."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.1f}{unit}"
    return f"{x:.0f}"
