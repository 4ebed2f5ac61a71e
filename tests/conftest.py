"""Suite-wide set-up: each test worker keeps its own state folder.

``metercert test`` keeps the client's own invocation counters under
``$XDG_STATE_HOME/metercert/client-counters`` (a head-end's counters must outlive a run),
and one counter file has one owner at a time. Test workers running side by side
(``pytest -n``) therefore each get a state folder of their own, so two campaigns against
two reference meters never contend for the same file.
"""

from __future__ import annotations

import os
import tempfile

_state = tempfile.mkdtemp(prefix=f"metercert-state-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-")
os.environ["XDG_STATE_HOME"] = _state
