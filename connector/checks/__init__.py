"""Counters you can trust: the checks before every publish, and the dataset's health.

A snapshot of download counters is an observation that can never be taken again, so a run
checks its staged day against the last published day before it (and against its config)
before the day replaces or extends history; a day a check fails is held, not published and not
thrown away (`connector.dataset.held`).

- `verdicts`: the pure half: verdicts from measurements (testable without I/O), and the
  `checks` document a manifest, a run record and a summary carry.
- `measure`: the measuring half, on DuckDB over the staged rows and the previous partition;
  `check_day` is the one function a publish calls.
- `document`: a `checks` document read back (untrusted: validated and bounded).
- `status`: the dataset's health from manifests, run records and held days (`connector status`).

Nothing is imported here, so reading a document does not load DuckDB.
"""
