"""Make the small helper modules of this folder (``_inprocess``, ``_secrets``) importable."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
