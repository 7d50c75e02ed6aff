"""What a run reports: the log (stderr and ``RUN/train.log``) and the scalar metrics
(``RUN/metrics.csv`` and TensorBoard when installed)."""
from __future__ import annotations

import csv
import io
import logging
import sys
import time
from pathlib import Path

from mate import distributed as mdist
from mate.atomic import atomic_write_bytes
from mate.rundir import RunDir

__all__ = ["METRICS_HEADER", "MetricsLog", "setup_logging", "format_terms", "read_metrics"]

log = logging.getLogger("mate.train")

METRICS_HEADER = ["stage", "split", "epoch", "step", "name", "value", "time_s"]


class MetricsLog:
    """CSV (always) and TensorBoard (when installed) scalars for one run. ``enabled=False`` (ranks
    other than 0) writes nothing."""

    def __init__(self, run: RunDir, enabled: bool = True):
        self.enabled = enabled
        self.csv_path = run.metrics_csv
        self.start = time.time()
        self.file = self.writer = self.tb = None
        if not enabled:
            return
        self._open()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run.tensorboard))
        except Exception as e:  # tensorboard not installed: CSV only
            log.warning("TensorBoard logging off (%s); metrics go to %s", e, self.csv_path)
            self.tb = None

    def _open(self) -> None:
        new = not self.csv_path.exists()
        self.file = open(self.csv_path, "a", newline="")
        self.writer = csv.writer(self.file)
        if new:
            self.writer.writerow(METRICS_HEADER)
            self.file.flush()

    def rewind(self, stage: str, step: int) -> None:
        """Forget ``stage``'s rows after ``step`` (a resume replays them) and any partial last line
        a crash left; the file is rewritten atomically."""
        if not self.enabled or not self.csv_path.exists():
            return
        self.file.close()
        with open(self.csv_path, newline="") as f:
            rows = list(csv.reader(f))
        kept = [METRICS_HEADER]
        for row in rows[1:]:
            if len(row) != len(METRICS_HEADER):
                continue
            try:
                if row[0] == stage and int(row[3]) > step:
                    continue
            except ValueError:
                continue
            kept.append(row)
        buf = io.StringIO()
        csv.writer(buf).writerows(kept)
        atomic_write_bytes(self.csv_path, buf.getvalue().encode())
        self._open()

    def scalars(self, stage: str, split: str, epoch: int, step: int, values: dict) -> None:
        """One row per value, at full float precision (``repr``)."""
        if not self.enabled:
            return
        t = round(time.time() - self.start, 2)
        for name, value in values.items():
            self.writer.writerow([stage, split, epoch, step, name, repr(float(value)), t])
            if self.tb is not None:
                self.tb.add_scalar(f"{stage}/{split}/{name}", value, step)
        self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()


def setup_logging(run: RunDir, main_process: bool = True) -> None:
    """Rank 0: INFO to stderr and RUN/train.log. Other ranks: warnings to stderr only."""
    if main_process:
        run.root.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s" if main_process else
                            f"%(asctime)s %(levelname)s [rank {mdist.rank()}] %(message)s", "%H:%M:%S")
    root = logging.getLogger("mate")
    root.setLevel(logging.INFO if main_process else logging.WARNING)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    handlers = [logging.StreamHandler(sys.stderr)]
    if main_process:
        handlers.append(logging.FileHandler(run.log))
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)


def format_terms(values: dict) -> str:
    """``{"total": 1.2, "rec": 0.5}`` -> ``"total=1.2000 rec=0.5000"`` (``-`` when empty)."""
    return " ".join(f"{k}={v:.4f}" for k, v in values.items()) or "-"


def read_metrics(path: Path, missing_ok: bool = False) -> list[dict]:
    """The rows of a ``metrics.csv`` written by :class:`MetricsLog`: dicts with ``stage``,
    ``split``, ``name`` (str), ``epoch``, ``step`` (int), ``value`` and ``time_s`` (float: seconds
    since the run's log opened; None in files without the column). Rows a crash cut
    short are skipped. A missing file raises ``FileNotFoundError`` (``missing_ok``: gives []); a
    file without the columns raises ``ValueError``."""
    path = Path(path)
    if not path.is_file():
        if missing_ok:
            return []
        raise FileNotFoundError(f"no metrics file at {path}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        needed = {"stage", "split", "step", "name", "value"}
        if reader.fieldnames is None or not needed <= set(reader.fieldnames):
            raise ValueError(f"{path} is not a MATE metrics.csv (columns {reader.fieldnames}, need {sorted(needed)})")
        rows = []
        for row in reader:
            try:
                rows.append({"stage": row["stage"], "split": row["split"], "step": int(float(row["step"])),
                             "epoch": int(float(row.get("epoch") or 0)), "name": row["name"],
                             "value": float(row["value"]),
                             "time_s": float(row["time_s"]) if row.get("time_s") not in (None, "") else None})
            except (TypeError, ValueError):
                continue  # a truncated last line of an interrupted run
    return rows
