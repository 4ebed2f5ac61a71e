"""Head-end certification: the reference meter as a hostile meter.

A client under test (head-end system, data concentrator, meter-reading tool) is run
once per scenario against a reference meter that answers with scripted misbehaviour
(:mod:`metercert.headend.hostile`); the meter records what the client did next and the
campaign reads the client's own output (:mod:`metercert.headend.observation`). The
checks in :mod:`metercert.checks.headend` turn those records into verdicts with the same
runner, reports and exit codes as ``certify``/``test``. docs/headend.md describes how
to plug in any client.
"""
