"""Inbound parsing of both providers: what their webhooks say, checked and turned into our
commands and facts.

``messagebird`` (MessageBird classic: the inbound-text callback, its JWT signature),
``messagebird_reports`` (its delivery-report callback), ``bird`` (Bird's Channels API
events: HMAC signature, freshness, replays, parsing); what both share: ``fields`` (limits,
phone numbers, times), ``errors`` (the error tree) and ``build``, the one builder of the
``ScreenText``, ``TextTimeClamped``, ``TextRejected`` and ``DeliveryReported`` they produce.
No Faust: the web views in ``streams.stages`` are the shells. Imports ``schemas`` and
``infra`` (numbers, privacy, signatures) only.
"""
