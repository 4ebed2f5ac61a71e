"""DLMS/COSEM security checks against a live meter (target kind ``dlms``), one module
per topic.

Each check drives the meter through :class:`metercert.client.target.DlmsTarget`
and returns a verdict with the APDU trace as evidence. A check only FAILs when
it has seen the flaw (the meter executed what it must refuse); when it cannot
tell, it raises or returns INCONCLUSIVE.

Counters are never reused with different content: attacks replay identical
bytes, and "stale counter" probes use counters the client skipped on purpose.

The modules are imported in campaign order (checks of one kind run in the order
they are declared): ciphering, counters, push, authentication, access, firmware,
robustness, keys, hdlc, suites.
"""

# isort: off
from metercert.checks.dlms import ciphering  # noqa: F401 - importing registers the checks
from metercert.checks.dlms import counters  # noqa: F401
# push: its power cycle (DLMS-PUSH-02) runs next to DLMS-IC-PERSIST-01, before key changes
from metercert.checks.dlms import push  # noqa: F401
from metercert.checks.dlms import authentication  # noqa: F401
from metercert.checks.dlms import access  # noqa: F401
from metercert.checks.dlms import firmware  # noqa: F401
from metercert.checks.dlms import robustness  # noqa: F401
from metercert.checks.dlms import keys  # noqa: F401
from metercert.checks.dlms import hdlc  # noqa: F401
from metercert.checks.dlms import suites  # noqa: F401
# isort: on
