"""The cross-framework requirement catalog.

Requirements of DLMS/COSEM (IEC 62056-5-3), IEC 62351-3/-8, ETSI EN 303 645,
the CRA, IEC 62443-4-2, BSI TR-03109-1 and the ENISA IoT baseline live as YAML
under ``data/``; checks cite their ids. :func:`load_catalog` reads and validates
them once; :mod:`.matrix`, :mod:`.gaps` and :mod:`.oscal` build on the result.
"""

from metercert.catalog.load import load_catalog
from metercert.catalog.model import Catalog, Requirement, Threat

__all__ = ["Catalog", "Requirement", "Threat", "load_catalog"]
