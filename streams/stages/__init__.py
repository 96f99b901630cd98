"""The worker's stages, each registered on the Faust app by one function (``streams.app``
wires them in the order of the data flow):

- ``screen``: screen_senders (per-sender screening) and the offset-order guards;
- ``decide``: decide_replies (the campaign shards), the tick timer, deferred reply-tos;
- ``send``: send_replies (the SMS gateway, at most once per approved request);
- ``control``: apply_controls (operator commands) and follow_policies (live policies);
- ``watchdog``: refetching records Faust dropped, campaign snapshots;
- ``views``: MessageBird's webhooks (texts, delivery reports), /health and /campaigns;
- ``bird``: Bird's webhook (texts and statuses, for the campaigns on Bird);
- ``webhooks``: what both providers' views share (bounded reads, signed URLs, storing
  what the intake built: ``streams.intake.build``);
- ``broker``: under `up`, what to do after its embedded broker came back.

They share one ``runtime.Runtime``: the app, its topics and tables, and the little state
more than one stage reads. What they decide lives in plain modules, tested without a broker
(``streams.rules.screening``, ``streams.rules.approvals``, ``streams.rules.sendstate``).
"""
