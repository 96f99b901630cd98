"""Which SMS provider each campaign uses, checked at start, and the gateways for them.

Two providers sit behind one gateway port (``infra.gateway.SmsGateway``):
``"messagebird"`` (the classic REST API through the ``messagebird`` SDK) and ``"bird"``
(Bird's Channels API, ``infra.bird_gateway``). The campaign file chooses::

    provider = "bird"              # the deployment's default; "messagebird" when absent
    [bird]
    workspace_id = "..."           # or BIRD_WORKSPACE_ID

    [[campaign]]
    id = "paris"
    provider = "bird"              # optional: this campaign's own choice
    bird_channel_id = "..."        # required for a Bird campaign: its SMS channel

A Bird campaign is reached through its channel (Bird's inbound events name the channel,
not our number), so two Bird campaigns never share a channel. Secrets come from the
environment: ``BIRD_ACCESS_KEY`` (without it the Bird campaigns run dry, as the classic
ones do without ``MESSAGEBIRD_ACCESS_KEY``), ``BIRD_SIGNING_KEY`` (the webhook
subscription's signing key, checked by the CLI like ``MESSAGEBIRD_SIGNING_KEY``),
``BIRD_ENDPOINT`` and ``BIRD_TIMEOUT_S``.

Errors: ``infra.config.ConfigError`` with the file, the campaign and the reason.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.config import ConfigError, read_campaign_file
from schemas.campaign import Campaign

log = logging.getLogger(__name__)

PROVIDERS = ("messagebird", "bird")
# Bird's migration page ("Migrate from MessageBird (classic) to Bird"): the dual-key window
# holds through 31 December 2026; after it a deployment on the classic API stops sending.
CLASSIC_KEYS_LAST_DAY = dt.date(2026, 12, 31)
MIGRATION_GUIDE = "docs/bird-migration.md"
_BIRD_KEYS = {"workspace_id", "endpoint"}


@dataclass(frozen=True)
class Providers:
    """The provider of every campaign, and the Bird account's ids."""

    by_campaign: Mapping[str, str]  # campaign id -> "messagebird" | "bird"
    bird_channels: Mapping[str, str] = field(default_factory=dict)  # channel id -> campaign
    bird_workspace_id: str | None = None
    bird_endpoint: str | None = None

    @property
    def uses_bird(self) -> bool:
        return "bird" in self.by_campaign.values()

    @property
    def uses_messagebird(self) -> bool:
        return "messagebird" in self.by_campaign.values()

    def channel_of(self, campaign_id: str) -> str | None:
        for channel, cid in self.bird_channels.items():
            if cid == campaign_id:
                return channel
        return None


def classic_warning(providers: Providers, today: dt.date) -> str | None:
    """The warning for campaigns still on MessageBird classic, with the date their keys
    stop working and how far off it is; None when every campaign is on Bird."""
    classic = sorted(cid for cid, p in providers.by_campaign.items() if p == "messagebird")
    if not classic:
        return None
    who = ("every campaign is" if len(classic) == len(providers.by_campaign)
           else f"campaign{'s' if len(classic) > 1 else ''} {', '.join(classic)} "
                f"{'are' if len(classic) > 1 else 'is'}")
    left = (CLASSIC_KEYS_LAST_DAY - today).days
    when = (f"stop working after {CLASSIC_KEYS_LAST_DAY.isoformat()} ({left} day"
            f"{'' if left == 1 else 's'} from today)" if left >= 0 else
            f"stopped working after {CLASSIC_KEYS_LAST_DAY.isoformat()}: these campaigns "
            "cannot send")
    return (f"{who} on MessageBird classic: classic access keys {when}, the end of Bird's "
            f"dual-key window; move to Bird ({MIGRATION_GUIDE})")


def load_providers(path: str | Path, campaigns: Sequence[Campaign],
                   environ: Mapping[str, str] = os.environ) -> Providers:
    return parse_providers(read_campaign_file(path), campaigns, str(path), environ)


def parse_providers(data: Mapping[str, Any], campaigns: Sequence[Campaign],
                    source: str = "<config>",
                    environ: Mapping[str, str] = os.environ) -> Providers:
    default = data.get("provider", "messagebird")
    if default not in PROVIDERS:
        raise ConfigError(f"{source}: 'provider' must be one of {list(PROVIDERS)}, "
                          f"got {default!r}")
    bird = data.get("bird", {})
    if not isinstance(bird, dict):
        raise ConfigError(f"{source}: [bird] must be a table")
    unknown = sorted(set(bird) - _BIRD_KEYS)
    if unknown:
        raise ConfigError(f"{source}: [bird]: unknown keys {unknown}")
    tables = {t.get("id"): t for t in data.get("campaign", []) if isinstance(t, dict)}
    by_campaign: dict[str, str] = {}
    channels: dict[str, str] = {}
    for c in campaigns:
        t = tables.get(c.id, {})
        where = f"{source}: campaign {c.id!r}"
        provider = t.get("provider", default)
        if provider not in PROVIDERS:
            raise ConfigError(f"{where}: 'provider' must be one of {list(PROVIDERS)}, "
                              f"got {provider!r}")
        channel = t.get("bird_channel_id")
        if provider == "bird":
            if not isinstance(channel, str) or not channel.strip():
                raise ConfigError(f"{where}: a Bird campaign needs 'bird_channel_id' (the id "
                                  "of its SMS channel in the Bird workspace)")
            channel = channel.strip()
            if channel in channels:
                raise ConfigError(f"{where}: Bird channel {channel!r} is also the channel of "
                                  f"campaign {channels[channel]!r}")
            channels[channel] = c.id
        elif channel is not None:
            raise ConfigError(f"{where}: 'bird_channel_id' is set but the provider is "
                              f"{provider!r}")
        by_campaign[c.id] = provider
    workspace = (environ.get("BIRD_WORKSPACE_ID") or "").strip() or bird.get("workspace_id")
    endpoint = (environ.get("BIRD_ENDPOINT") or "").strip() or bird.get("endpoint")
    if channels and (not isinstance(workspace, str) or not workspace.strip()):
        raise ConfigError(f"{source}: Bird campaigns need the workspace id: [bird] "
                          "workspace_id or BIRD_WORKSPACE_ID")
    if endpoint is not None and (not isinstance(endpoint, str)
                                 or not endpoint.startswith(("https://", "http://"))):
        raise ConfigError(f"{source}: the Bird endpoint must be an http(s) URL")
    return Providers(by_campaign=by_campaign, bird_channels=channels,
                     bird_workspace_id=workspace if channels else None,
                     bird_endpoint=endpoint)


class CampaignGateways:
    """The gateway of each campaign: the port the send stage calls (``for_campaign``)."""

    def __init__(self, default: Any, by_campaign: Mapping[str, Any] | None = None) -> None:
        self.default = default
        self.by_campaign = dict(by_campaign or {})

    def for_campaign(self, campaign_id: str) -> Any:
        return self.by_campaign.get(campaign_id, self.default)

    def all(self) -> list[Any]:
        seen: dict[int, Any] = {id(self.default): self.default}
        for g in self.by_campaign.values():
            seen.setdefault(id(g), g)
        return list(seen.values())

    def close(self) -> None:
        for g in self.all():
            close = getattr(g, "close", None)
            if close is not None:
                close()

    def __repr__(self) -> str:
        return f"CampaignGateways(default={self.default!r}, by_campaign={self.by_campaign!r})"


def gateways_from_env(providers: Providers, classic: Any,
                      environ: Mapping[str, str] = os.environ) -> CampaignGateways:
    """``classic`` (MessageBird or dry run) for the classic campaigns; one ``BirdGateway``
    per Bird channel, sharing one pooled transport (a ``DryRunGateway`` without
    ``BIRD_ACCESS_KEY``). Raises ValueError for a bad ``BIRD_TIMEOUT_S``."""
    from infra.bird_gateway import DEFAULT_BIRD_ENDPOINT, BirdGateway, BirdTransport
    from infra.gateway import DryRunGateway, timeout_from_env

    if not providers.uses_bird:
        return CampaignGateways(classic)
    access_key = (environ.get("BIRD_ACCESS_KEY") or "").strip()
    timeout = timeout_from_env(environ, "BIRD_TIMEOUT_S", 10.0)
    by_campaign: dict[str, Any] = {}
    if not access_key:
        log.info("BIRD_ACCESS_KEY is not set: dry run for the Bird campaigns")
        dry = DryRunGateway()
        by_campaign = {cid: dry for cid in providers.bird_channels.values()}
    else:
        transport = BirdTransport(access_key, providers.bird_endpoint or DEFAULT_BIRD_ENDPOINT,
                                  timeout=timeout)
        assert providers.bird_workspace_id is not None
        for channel, cid in providers.bird_channels.items():
            by_campaign[cid] = BirdGateway(transport, providers.bird_workspace_id, channel)
    return CampaignGateways(classic, by_campaign)
