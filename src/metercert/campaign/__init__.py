"""Campaigns: which checks run against which targets, and the record of a run.

``config`` reads campaign files; ``selection`` decides which checks run and in
what order; ``runner`` runs them, each under its own time limit, in one event loop.
"""

from metercert.campaign.config import (
    CampaignConfig,
    CampaignFileError,
    DlmsEndpoint,
    PowerConfig,
    RoleConfig,
    TlsConfig,
    load_campaign,
    parse_campaign,
)
from metercert.campaign.runner import (
    CampaignRun,
    describe_target,
    run_campaign,
    run_campaign_async,
    run_check,
)
from metercert.campaign.selection import Deselected, matches_any, order_checks, select_checks

__all__ = [
    "CampaignConfig",
    "CampaignFileError",
    "CampaignRun",
    "Deselected",
    "DlmsEndpoint",
    "PowerConfig",
    "RoleConfig",
    "TlsConfig",
    "describe_target",
    "load_campaign",
    "matches_any",
    "order_checks",
    "parse_campaign",
    "run_campaign",
    "run_campaign_async",
    "run_check",
    "select_checks",
]
