"""The eager ``wait_first`` (infra/faust/patches.py) answers as mode's own does: the delivery
that finishes at once wins without a task; one that waits is raced against the event as
before (the event set interrupts it, its cleanup runs); errors come out either way; any other
call is mode's. On a mode Service of its own (a class per test: the install patches it)."""

from __future__ import annotations

import asyncio

import pytest
from mode import Service

from infra.faust.patches import install_eager_delivery, resume, unset_event_wait


def service_class() -> type:
    class Consumer(Service):
        pass

    assert install_eager_delivery(True, Consumer)
    return Consumer


class CountingTasks:
    """Counts the tasks made on the running loop while it is installed."""

    def __init__(self) -> None:
        self.made = 0

    def __enter__(self) -> CountingTasks:
        loop = asyncio.get_running_loop()

        def factory(loop: asyncio.AbstractEventLoop, coro, **kwargs):  # type: ignore[no-untyped-def]
            self.made += 1
            return asyncio.Task(coro, loop=loop, **kwargs)

        loop.set_task_factory(factory)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.get_running_loop().set_task_factory(None)


def test_a_delivery_that_does_not_wait_wins_without_a_task() -> None:
    async def main() -> None:
        service = service_class()()
        flow = asyncio.Event()
        delivered = []

        async def deliver(n: int) -> int:
            delivered.append(n)
            return n * 2

        with CountingTasks() as tasks:
            for n in range(50):
                result = await service.wait_first(deliver(n), flow.wait())
                assert len(result.done) == 1 and result.results == [n * 2]
                assert not result.stopped
        assert delivered == list(range(50))
        assert tasks.made == 0

    asyncio.run(main())


def test_a_delivery_that_waits_finishes_in_the_race_with_its_result() -> None:
    async def main() -> None:
        service = service_class()()
        flow = asyncio.Event()
        room = asyncio.Event()
        steps = []

        async def deliver() -> str:
            steps.append("start")
            await room.wait()
            steps.append("after room")
            await asyncio.sleep(0)
            return "put"

        loop = asyncio.get_running_loop()
        loop.call_later(0.01, room.set)
        with CountingTasks() as tasks:
            result = await service.wait_first(deliver(), flow.wait())
        assert result.results == ["put"]
        assert steps == ["start", "after room"]
        assert tasks.made >= 2  # mode's own race, as before

    asyncio.run(main())


def test_the_event_set_interrupts_a_waiting_delivery_and_its_cleanup_runs() -> None:
    async def main() -> None:
        service = service_class()()
        flow = asyncio.Event()
        cleaned = []

        async def deliver() -> None:
            try:
                await asyncio.Event().wait()  # a full queue that never drains
            finally:
                cleaned.append(True)

        asyncio.get_running_loop().call_later(0.01, flow.set)
        result = await service.wait_first(deliver(), flow.wait())
        assert result.results == [True]  # the flow's wait won
        await asyncio.sleep(0)
        assert cleaned == [True]

    asyncio.run(main())


@pytest.mark.parametrize("waits_first", [False, True])
def test_an_error_in_the_delivery_comes_out(waits_first: bool) -> None:
    async def main() -> None:
        service = service_class()()
        flow = asyncio.Event()

        async def deliver() -> None:
            if waits_first:
                await asyncio.sleep(0.001)
            raise ValueError("bad record")

        with pytest.raises(ValueError, match="bad record"):
            await service.wait_first(deliver(), flow.wait())

    asyncio.run(main())


def test_with_the_event_set_or_other_arguments_it_is_modes_own() -> None:
    async def main() -> None:
        service = service_class()()
        flow = asyncio.Event()
        flow.set()

        async def deliver() -> str:
            return "put"

        with CountingTasks() as tasks:
            result = await service.wait_first(deliver(), flow.wait())
            assert tasks.made >= 2
        assert result.results  # mode's answer: whichever finished
        other = asyncio.Event()
        with CountingTasks() as tasks:
            result = await service.wait_first(deliver(), other.wait(), timeout=1.0)
            assert tasks.made >= 2
        assert result.results == ["put"]

    asyncio.run(main())


def test_unset_event_wait_recognises_only_an_unset_events_wait() -> None:
    async def main() -> None:
        unset, is_set = asyncio.Event(), asyncio.Event()
        is_set.set()

        async def other() -> None:
            return None

        for coro, want in ((unset.wait(), True), (is_set.wait(), False), (other(), False)):
            assert unset_event_wait(coro) is want
            coro.close()
        assert unset_event_wait(None) is False

    asyncio.run(main())


def test_resume_passes_cancellation_to_the_coroutine() -> None:
    async def main() -> None:
        seen = []

        async def inner() -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise

        coro = inner()
        waiting = coro.send(None)

        async def rest() -> None:
            await resume(coro, waiting)

        task = asyncio.ensure_future(rest())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert seen == ["cancelled"]

    asyncio.run(main())


def test_off_when_asked() -> None:
    class Consumer(Service):
        pass

    before = Consumer.wait_first
    assert install_eager_delivery(False, Consumer) is False
    assert Consumer.wait_first is before
