"""``infra.verify``: an export checked against the deployment's signed checkpoints. An
untouched export of a flood journal verifies; one flipped byte, one event deleted, two
swapped, the end cut off, a checkpoint replaced or signed by another deployment: each is
named in one line."""

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.checkpoints import (
    Checkpoint,
    NoteError,
    Verifier,
    open_note,
    read_notes,
    sign_note,
    signing_key,
    verifier_key,
)
from infra.verify import BadExport, Tampered, parse_checkpoints, verify_export
from tests.factories import T0, journal_of
from tests.factories import story_campaign as audit_campaign
from tests.journals import ORIGIN, SECRET, notarise, partitioned, write_export

MINUTE = 60_000
FLOOD = {"surge_multiple": 2, "surge_min_rate": 3, "surge_quiet_minutes": 2, "surge_queue": 3,
         "surge_ttl_ms": 10 * MINUTE, "surge_release_per_minute": 2}


def vkey(secret=SECRET, origin=ORIGIN) -> Verifier:
    return Verifier.parse(verifier_key(origin, signing_key(secret).public_key().public_bytes_raw()))


def flood_journal():
    """A quiet hour, then 40 first texts in two minutes from 40 senders, some texting again."""
    from schemas.commands import ChangePolicy, Tick

    c = audit_campaign()
    steps = [ChangePolicy(command_id="flood", campaign_id=c.id, changes=dict(FLOOD), operator="op",
                          occurred_at=T0)]
    steps += [(f"q{i}", c.id, f"s_quiet{i}", T0 + i * 10 * MINUTE, "33-612") for i in range(6)]
    at = T0 + 70 * MINUTE
    steps += [(f"r{i}", c.id, f"s_raid{i}", at + i * 3_000, "33-756") for i in range(40)]
    steps += [(f"r{i}b", c.id, f"s_raid{i}", at + 130_000 + i * 1_000, "33-756") for i in range(10)]
    steps += [Tick(campaign_id=c.id, occurred_at=at + k * MINUTE) for k in range(3, 30, 3)]
    return journal_of(steps, [c])


@pytest.fixture(scope="module")
def flood_parts():
    return partitioned(flood_journal())


@pytest.fixture
def export(tmp_path, flood_parts):
    return write_export(tmp_path, flood_parts, notarise(flood_parts))


def check(path, checkpoints_text=None, verifier=None):
    text = checkpoints_text if checkpoints_text is not None else \
        open(f"{path}.checkpoints").read()
    return verify_export(str(path), parse_checkpoints(text), verifier or vkey())


def lines(path):
    return path.read_bytes().splitlines(keepends=True)


def test_an_untouched_export_of_a_flood_journal_verifies(export, flood_parts):
    summary = check(export)
    assert summary.events == sum(map(len, flood_parts)) > 100
    assert summary.partitions == 3 and summary.unsigned == 0
    assert summary.line().startswith(f"verified: {summary.events:,} events in 3 partition(s)")


def test_one_flipped_byte_is_named_by_its_line(export):
    data = lines(export)
    n = 40  # an event line (line 1 is a partition line)
    assert data[n - 1].startswith(b'{"type"')
    data[n - 1] = data[n - 1].replace(b'"occurred_at":1', b'"occurred_at":2', 1)
    export.write_bytes(b"".join(data))
    with pytest.raises(Tampered, match=rf"^line {n} \(partition 0, event #{n - 1}\): .*changed"):
        check(export)


def test_one_deleted_event_is_named(export):
    data = lines(export)
    del data[9]
    export.write_bytes(b"".join(data))
    with pytest.raises(Tampered, match=r"^line 10 \(partition 0, event #9\): .*missing"):
        check(export)


def test_two_swapped_events_are_named(export):
    data = lines(export)
    data[4], data[6] = data[6], data[4]
    export.write_bytes(b"".join(data))
    with pytest.raises(Tampered, match=r"^line 5 \(partition 0, event #4\): notarised as event #6"):
        check(export)


def test_a_cut_export_says_how_many_are_missing(export):
    data = lines(export)
    export.write_bytes(b"".join(data[:-3]))
    with pytest.raises(Tampered, match=r"^partition 2: the export ends after event #\d+, .* the "
                                       r"last 3 are missing"):
        check(export)


def test_without_the_leaf_hashes_the_place_is_named_to_the_checkpoint(export):
    notes = "\n".join(note for note, _, _ in parse_checkpoints(open(f"{export}.checkpoints").read()))
    assert check(export, notes).events > 100  # the public notes alone verify the export
    data = lines(export)
    data[9] = data[9].replace(b'"occurred_at":1', b'"occurred_at":2', 1)
    export.write_bytes(b"".join(data))
    with pytest.raises(Tampered, match=r"^line 15 \(partition 0\): events #8..#14 are not those "
                                       "signed at"):
        check(export, notes)


def test_a_replaced_checkpoint_is_refused(export):
    records = open(f"{export}.checkpoints").read().splitlines()
    # Another root signed with another key (the forger has no deployment secret)...
    import orjson
    record = orjson.loads(records[1])
    body = open_note(record["note"], vkey())
    forged = Checkpoint.parse(body)
    forged_body = Checkpoint(forged.origin, forged.size, b"\x07" * 32, forged.at).body()
    record["note"] = sign_note(forged_body, ORIGIN, signing_key(b"not the deployment secret!!"))
    records[1] = orjson.dumps(record).decode()
    with pytest.raises(Tampered, match=r"^checkpoint #2: signed by antirelou/test\+[0-9a-f]{8}, not by "):
        check(export, "\n".join(records))
    # ... or the note edited after it was signed.
    record["note"] = sign_note(body, ORIGIN, signing_key(SECRET)).replace(
        body.splitlines()[1], str(forged.size + 1), 1)
    records[1] = orjson.dumps(record).decode()
    with pytest.raises(Tampered, match=r"^checkpoint #2: the signature of .* does not verify"):
        check(export, "\n".join(records))


def test_a_checkpoint_of_another_deployment_or_a_wrong_key_is_refused(export):
    with pytest.raises(Tampered, match=r"^checkpoint #1: signed by .*, not by antirelou/test\+"):
        check(export, verifier=vkey(secret=b"another deployment's secret"))
    other = write_export(export.parent, [[b'{"type":"x"}']], notarise([[b'{"type":"x"}']],
                         origin="antirelou/elsewhere"), name="other.jsonl")
    notes = open(f"{other}.checkpoints").read()
    with pytest.raises(Tampered, match=r"^checkpoint #1: signed by antirelou/elsewhere"):
        check(export, notes)


def test_leaf_hashes_that_do_not_give_the_signed_root_are_refused(export):
    import orjson
    records = [orjson.loads(x) for x in open(f"{export}.checkpoints").read().splitlines()]
    leaves = bytearray(base64.b64decode(records[0]["leaves"]))
    leaves[0] ^= 1
    records[0]["leaves"] = base64.b64encode(bytes(leaves)).decode()
    with pytest.raises(Tampered, match=r"^partition 0: the notary's leaf hashes do not give the root"):
        check(export, "\n".join(orjson.dumps(r).decode() for r in records))


def test_not_an_export_is_bad_input(tmp_path):
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(b'{"type":"TextReceived"}\n')
    with pytest.raises(BadExport, match="no partition line before the first event"):
        verify_export(str(plain), [], vkey())
    with pytest.raises(BadExport, match="checkpoints line 1: not a notary record"):
        parse_checkpoints('{"note": 1}\n')
    with pytest.raises(NoteError, match="not a verifier key"):
        Verifier.parse("abc")


def test_notes_read_back_one_after_the_other():
    key = signing_key(SECRET)
    notes = [sign_note(Checkpoint(f"{ORIGIN}/journal/{p}", p, b"\x01" * 32, "t").body(), ORIGIN, key)
             for p in range(3)]
    assert list(read_notes("\n".join(notes))) == notes


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.binary(min_size=1, max_size=40).map(
    lambda b: b'{"type":"' + base64.b64encode(b) + b'"}'), max_size=30), min_size=1, max_size=4),
    st.integers(1, 9), st.data())
def test_any_journal_verifies_and_any_one_change_to_it_is_found(tmp_path_factory, parts, every, data):
    path = write_export(tmp_path_factory.mktemp("j"), parts, notarise(parts, every=every))
    assert check(path).events == sum(map(len, parts))
    events = [(p, i) for p, records in enumerate(parts) for i in range(len(records))]
    if not events:
        return
    p, i = data.draw(st.sampled_from(events))
    how = data.draw(st.sampled_from(["change", "delete", "swap", "add"]))
    changed = [list(r) for r in parts]
    if how == "change":
        changed[p][i] = changed[p][i][:-2] + b'x"}'
    elif how == "delete":
        del changed[p][i]
    elif how == "swap" and i + 1 < len(changed[p]) and changed[p][i] != changed[p][i + 1]:
        changed[p][i], changed[p][i + 1] = changed[p][i + 1], changed[p][i]
    else:
        changed[p].insert(i, b'{"type":"added"}')
    if changed == parts:
        return
    path = write_export(path.parent, changed, [], name="changed.jsonl")
    with pytest.raises(Tampered, match=rf"partition {p}"):
        check(path, open(f"{path.parent}/journal.jsonl.checkpoints").read())
