"""No user error ends in a traceback: each invocation below (those issue 33 found, and more)
runs the real `antirelou` command and must say what is wrong in one line, with the exit
status of bad input (2) or of a refusal (1), and print no banner. None needs a running
deployment; `journal | head` reads a real broker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.factories import ROOT

CONFIG = """
[[campaign]]
id = "paris"
number = "+33644630001"
reply_text = "Non, c'est non."
language = "fr"
budget_eur = "3700.00"
price_per_segment_eur = "0.08"
start = 2026-11-01
end = 2099-10-31
"""


def antirelou(*argv: str, cwd=None, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("ANTIRELOU_", "KAFKA_", "MESSAGEBIRD_", "BIRD_"))}
    return subprocess.run([sys.executable, "-m", "streams.cli", *argv], capture_output=True,
                          text=True, timeout=120, cwd=cwd or ROOT,
                          env={**clean, "PYTHONPATH": str(ROOT), **env})


def one_line(r: subprocess.CompletedProcess, code: int) -> str:
    """The one line of stderr; nothing on stdout (no banner); the exit status."""
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert r.stdout == "", r.stdout
    assert r.returncode == code, (r.returncode, r.stderr)
    return lines[0]


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(CONFIG)
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


UP = ["up", "--insecure-dev"]


@pytest.mark.parametrize("argv, said", [
    (["budget", "credit", "paris", "99999999999999", "--source", "leetchi", "--insecure-dev"],
     "antirelou: amount: 99999999999999 is more than EUR 1,000,000,000: not an amount this "
     "system takes"),
    (["policy", "set", "paris", "cooldown_days=Infinity"],
     "antirelou: cooldown_days: 'Infinity' is not a number of days (or 'never')"),
    (["policy", "set", "paris", "surge_queue=99999999999999999999"],
     "antirelou: surge_queue: 99999999999999999999 is too large"),
    (["policy", "set", "paris", "cooldown_dys=3"], "antirelou: unknown policy key 'cooldown_dys' "
     "(did you mean 'cooldown_days'?); known: "),
    (["simulate", "--scale", "0"], "antirelou simulate: --scale: 0 must be a number above 0"),
    (["simulate", "--scale", "-1"], "antirelou simulate: --scale: -1 must be a number above 0"),
    (["simulate", "--rate", "0"], "antirelou simulate: --rate: 0 must be a number above 0"),
    (["simulate", "--scenario", "raid", "--html", "x.html"],
     "antirelou simulate: --html writes the 2017 week's charts or the grid's page; a scenario "
     "has none"),
    (["simulate", "--scal", "1"], "antirelou simulate: unrecognized arguments: --scal 1 (did "
     "you mean '--scale'?)"),
    (["journal", "--kafka", "host:notaport"],
     "antirelou journal: --kafka: 'host:notaport': 'notaport' is not a port (1 to 65535)"),
    (["journal", "--kafka", "host:99999"],
     "antirelou journal: --kafka: 'host:99999': '99999' is not a port (1 to 65535)"),
    (["policy", "show", "--kafka", "nohost"],
     "antirelou policy show: --kafka: 'nohost' is not HOST:PORT (e.g. 127.0.0.1:9092)"),
    ([*UP, "--web-port", "99999"], "antirelou up: --web-port: 99999 is not a port (1 to 65535)"),
    ([*UP, "--kafka-port", "0"], "antirelou up: --kafka-port: 0 is not a port (1 to 65535)"),
    ([*UP, "--tick-interval", "0"], "antirelou up: --tick-interval: 0 must be a number above 0"),
    ([*UP, "--tick-interval", "0.001"],
     "antirelou up: --tick-interval: 0.001 is too short: at least 0.1 s"),
    ([*UP, "--shards", "0"], "antirelou up: --shards: 0 must be at least 1"),
    ([*UP, "--snapshot-interval", "-1"],
     "antirelou up: --snapshot-interval: -1 must be a number above 0"),
    ([*UP, "--loglevel", "loud"],
     "antirelou up: --loglevel: 'loud' is not one of critical, error, warning, info, debug"),
    (["worker", "--kafka", "127.0.0.1:9", "--partitions", "0"],
     "antirelou worker: --partitions: 0 must be at least 1"),
    (["fake-messagebird", "--port", "70000"],
     "antirelou fake-messagebird: --port: 70000 is not a port (1 to 65535)"),
    # No abbreviations: --f would have meant --force.
    (["policy", "set", "paris", "reserve_eur=5000", "--f"],
     "antirelou policy set: unrecognized arguments: --f (did you mean '--force'?)"),
    (["polcy", "show"], "antirelou: COMMAND: invalid choice 'polcy' (did you mean 'policy'?)"),
    (["budget", "credti", "paris", "5"], "antirelou budget: credit: invalid choice 'credti' "
     "(did you mean 'credit'?)"),
])
def test_a_bad_value_is_one_line_and_exit_2(config, argv, said):
    # The broker address is unused (nothing listens on port 9): input is checked first.
    extra = ["--config", config] if argv[0] in ("budget", "policy", "up") else []
    kafka = ["--kafka", "127.0.0.1:9"] if argv[0] in ("budget", "policy") and \
        "--kafka" not in argv else []
    line = one_line(antirelou(*argv, *extra, *kafka), 2)
    assert line.startswith(said), line


def test_up_on_a_busy_web_port_says_so_before_any_banner(config, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = antirelou(*UP, "--config", config, "--web-port", str(port),
                      "--state-dir", str(tmp_path / "state"))
    assert one_line(r, 2) == (f"antirelou: the web port 127.0.0.1:{port} is in use: stop what "
                              "listens there or choose another --web-port / ANTIRELOU_WEB_PORT")
    assert not (tmp_path / "state").exists()  # nothing was started or written


def test_up_on_a_busy_broker_port_says_so_in_one_line(config, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = antirelou(*UP, "--config", config, "--kafka-port", str(port), "--web-port",
                      str(free_port()), "--state-dir", str(tmp_path / "state"))
    errors = [line for line in r.stderr.splitlines() if line.startswith("antirelou:")]
    assert errors == [f"antirelou: cannot start noida-db: port {port} on 127.0.0.1 is already "
                      "in use (another broker or service is listening there)"], r.stderr
    assert "Traceback" not in r.stderr and (r.returncode, r.stdout) == (1, "")


def test_a_state_dir_that_cannot_be_created_is_one_line(config, tmp_path):
    (tmp_path / "a-file").write_text("")
    r = antirelou(*UP, "--config", config, "--web-port", str(free_port()),
                  "--state-dir", str(tmp_path / "a-file" / "state"))
    assert one_line(r, 2) == (f"antirelou: --state-dir {tmp_path / 'a-file' / 'state'}: cannot "
                              "create the folder (Not a directory)")


@pytest.mark.parametrize("scenario", [[], ["--scenario", "raid"]])
def test_simulate_to_a_dead_webhook_fails_before_sending(scenario):
    port = free_port()
    r = antirelou("simulate", *scenario, "--scale", "0.01", "--unsigned", "--no-progress",
                  "--webhook", f"http://127.0.0.1:{port}/webhooks/messagebird/sms",
                  "--recipient", "33644630001")
    assert one_line(r, 1) == (f"antirelou: simulate: nothing answers at 127.0.0.1:{port} "
                              "(Connection refused): is the worker running (bash infra/up.sh)?")


def test_help_texts_are_for_people():
    """Every command's --help: the command's own name, no `(default: None)`, no reST."""
    from streams import cli

    commands = [["--help"], ["simulate", "--help"]]
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, child in sub.choices.items():
        if name == "simulate":
            continue
        nested = [a for a in child._actions if a.dest.endswith("_command")]
        if nested:
            commands += [[name, leaf, "--help"] for leaf in nested[0].choices]
        else:
            commands.append([name, "--help"])
    for argv in commands:
        r = antirelou(*argv)
        assert r.returncode == 0, (argv, r.stderr)
        text = " ".join(r.stdout.split())
        assert "(default: None)" not in text and "(default: False)" not in text, argv
        assert "`" not in text, (argv, text)
        assert "python -m" not in text, (argv, text)
        assert text.startswith(f"usage: antirelou {' '.join(argv[:-1])}".strip()), (argv, text)


def test_journal_into_head_is_a_quiet_exit_0(kafka, tmp_path):
    """`antirelou journal | head -1`: the reader closing the pipe is no broker error."""
    import asyncio
    import uuid

    from aiokafka import AIOKafkaProducer

    from infra.broker import ensure_topics
    from schemas import codec
    from schemas.events import TextRejected

    app = f"pipe{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka, {f"{app}.journal": 1})

    async def fill() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka)
        await producer.start()
        try:
            for i in range(3000):  # far more than a pipe holds (64 KiB)
                event = TextRejected(message_id=f"m{i}", recipient="33699999999",
                                     reason="unknown_recipient", occurred_at=1_800_000_000_000)
                await producer.send(f"{app}.journal", codec.encode(event))
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(fill())
    cmd = (f"{sys.executable} -m streams.cli journal --kafka {kafka} --app-id {app} | head -1; "
           "exit ${PIPESTATUS[0]}")
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120,
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert '"type":"TextRejected"' in r.stdout.replace(" ", "")
    assert (r.returncode, r.stderr) == (0, "")
