"""``python -m tests.e2e.faulty_worker worker ...``: ``antirelou worker`` with faults made
once each, named in ``ANTIRELOU_TEST_FAULTS`` (comma-separated), for the fault tests:

- ``screen``: screening's forward of its requests raises, after the batch's verdicts and
  sender states were stored;
- ``decide``: the shards decide a batch of requests, then the call raises (as a facade did
  after 180 s of an unavailable shard): decided, never journaled;
- ``control``: the shards decide an operator command, then the call raises;
- ``drop_policy``: the first PolicyChanged published on the policies topic is dropped (as
  a broker that lost it after acknowledging it).

Each fault is said in the log (``injected fault``). Test code only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

log = logging.getLogger("antirelou.test")


def install(faults: set[str]) -> None:
    import faust.topics

    from actors.remote import CampaignShards
    from schemas.commands import RequestReply
    from streams.stages.runtime import Runtime

    def once(name: str) -> bool:
        if name in faults:
            faults.discard(name)
            log.warning("injected fault: %s", name)
            return True
        return False

    send_records = Runtime.send_records

    async def flaky_send_records(self, topic, records):
        if records and topic.endswith(".reply-requests") and once("screen"):
            raise RuntimeError("injected fault: screen")
        return await send_records(self, topic, records)

    Runtime.send_records = flaky_send_records  # type: ignore[method-assign]

    decide = CampaignShards.decide

    async def flaky_decide(self, batch):
        answer = await decide(self, batch)
        if any(isinstance(c, RequestReply) for c in batch) and once("decide"):
            raise RuntimeError("injected fault: decide")
        return answer

    CampaignShards.decide = flaky_decide  # type: ignore[method-assign]

    control = CampaignShards.control

    async def flaky_control(self, batch):
        answer = await control(self, batch)
        if once("control"):
            raise RuntimeError("injected fault: control")
        return answer

    CampaignShards.control = flaky_control  # type: ignore[method-assign]

    topic_send = faust.topics.Topic.send

    async def dropping_send(self, *args, **kwargs):
        if self.get_topic_name().endswith(".policies") and once("drop_policy"):
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        return await topic_send(self, *args, **kwargs)

    faust.topics.Topic.send = dropping_send  # type: ignore[method-assign]


if __name__ == "__main__":
    install({f for f in os.environ.get("ANTIRELOU_TEST_FAULTS", "").split(",") if f})
    from streams.cli import main

    sys.exit(main())
