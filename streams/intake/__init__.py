"""Inbound parsing of both providers: what their webhooks say, checked and turned into our
commands and facts (``ScreenText``, ``DeliveryReported``, ``TextRejected``).

``messagebird`` (MessageBird classic: the inbound-text callback, its JWT signature, the
error tree), ``messagebird_reports`` (its delivery-report callback), ``bird`` (Bird's
Channels API events: HMAC signature, freshness, replays, parsing). No Faust: the web views
in ``streams.stages`` are the shells. Imports ``schemas`` and ``infra`` (numbers, privacy,
signatures) only.
"""
