"""Fleet traffic audit: captures and head-end logs into a day-partitioned Parquet
dataset, SQL detectors (counter reuse, regression, replay, plaintext, suite
downgrade, counter exhaustion, counter jumps) run unchanged on DuckDB or Spark,
and a simulator that plants each anomaly with its ground truth.

Import the submodules directly; this package keeps its import light because the
check registry imports every package at start-up.
"""

from __future__ import annotations

__all__ = ["capture", "detectors", "engines", "ingest", "logs", "pcap", "report", "schema",
           "simulate", "verdicts"]
