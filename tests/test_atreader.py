"""The AT reader: framing rules, payload counting, and its rule under Hypothesis."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modembridge.atreader import (
    ATEvent,
    ATReader,
    Echo,
    Final,
    Info,
    Payload,
    Prompt,
    Urc,
    answer_prefixes,
)
from modembridge.errors import ATProtocolError


def feed(reader: ATReader, data: bytes, *, bytewise: bool = False) -> list[ATEvent]:
    if not bytewise:
        return reader.feed(data)
    return [event for i in range(len(data)) for event in reader.feed(data[i : i + 1])]


def answer(command: str, data: bytes, **options: bool) -> list[ATEvent]:
    reader = ATReader()
    reader.command_sent(command, **options)
    return reader.feed(data)


def test_echo_is_the_command_and_a_lone_cr() -> None:
    events = answer("AT+CSQ", b"AT+CSQ\r\r\n+CSQ: 19,99\r\n\r\nOK\r\n")

    assert events == [Echo("AT+CSQ"), Info("+CSQ: 19,99"), Final("OK")]


def test_without_echo_the_same_answer() -> None:
    events = answer("AT+CSQ", b"\r\n+CSQ: 19,99\r\n\r\nOK\r\n")

    assert events == [Info("+CSQ: 19,99"), Final("OK")]


def test_error_results_carry_code_and_text() -> None:
    numeric = answer("AT+CPIN?", b"\r\n+CME ERROR: 10\r\n")[0]
    words = answer("AT+CPIN?", b"\r\n+CME ERROR: SIM busy\r\n")[0]

    assert isinstance(numeric, Final)
    assert isinstance(words, Final)
    assert (numeric.ok, numeric.code, numeric.text) == (False, 10, "10")
    assert (words.code, words.text) == (None, "SIM busy")


def test_send_results_are_final() -> None:
    ok = answer("AT+QISEND=0,4", b"\r\n> ", expects_prompt=True)
    done = Final("SEND OK")

    assert ok == [Prompt()]
    assert done.ok
    assert not Final("SEND FAIL").ok


def test_prompt_only_while_a_send_waits_for_it() -> None:
    assert answer("AT+CIPSEND=0,5", b"\r\n>", expects_prompt=True) == [Prompt()]
    assert answer("AT+CSQ", b"\r\n>") == []


def test_urc_between_command_and_echo() -> None:
    data = b"\r\n+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY\r\nAT+CIPRXGET=4,1\r\r\n"
    events = answer("AT+CIPRXGET=4,1", data + b"+CIPRXGET: 4,1,0\r\n\r\nOK\r\n")

    assert events == [
        Urc("+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY"),
        Echo("AT+CIPRXGET=4,1"),
        Info("+CIPRXGET: 4,1,0"),
        Final("OK"),
    ]


def test_data_notice_is_a_urc_even_while_a_read_is_pending() -> None:
    data = b"\r\n+CIPRXGET: 1,3\r\n\r\n+CIPRXGET: 2,0,4,0\r\nOK\r\n\r\n\r\nOK\r\n"
    events = answer("AT+CIPRXGET=2,0,1500", data)

    assert events == [
        Urc("+CIPRXGET: 1,3"),
        Payload("+CIPRXGET: 2,0,4,0", b"OK\r\n", 0, solicited=True),
        Final("OK"),
    ]


def test_late_result_is_a_urc_but_a_query_answer_is_information() -> None:
    reader = ATReader()
    reader.command_sent("AT+NETOPEN")
    late = reader.feed(b"\r\nOK\r\n\r\n+NETOPEN: 0\r\n")
    reader.command_sent("AT+NETOPEN?")
    query = reader.feed(b"\r\n+NETOPEN: 0\r\n\r\nOK\r\n")

    assert late == [Final("OK"), Urc("+NETOPEN: 0")]
    assert query == [Info("+NETOPEN: 0"), Final("OK")]


@pytest.mark.parametrize("bytewise", [False, True])
def test_buffered_read_payload_keeps_protocol_bytes(bytewise: bool) -> None:
    payload = b"OK\r\n> \r\nERROR\r\n+QIURC: x\r\n"
    reader = ATReader()
    reader.command_sent("AT+QIRD=0,1500")
    data = b"\r\n+QIRD: %d\r\n" % len(payload) + payload + b"\r\n\r\nOK\r\n"

    events = feed(reader, data, bytewise=bytewise)

    assert events == [
        Payload(f"+QIRD: {len(payload)}", payload, None, solicited=True),
        Final("OK"),
    ]


def test_counters_and_empty_reads_carry_no_payload() -> None:
    counters = answer("AT+QIRD=0,0", b"\r\n+QIRD: 3524,3005,519\r\n\r\nOK\r\n")
    empty = answer("AT+QIRD=0,1500", b"\r\n+QIRD: 0\r\n\r\nOK\r\n")
    pending = answer("AT+CIPRXGET=4,0", b"\r\n+CIPRXGET: 4,0,12\r\n\r\nOK\r\n")

    assert counters == [Info("+QIRD: 3524,3005,519"), Final("OK")]
    assert empty == [Info("+QIRD: 0"), Final("OK")]
    assert pending == [Info("+CIPRXGET: 4,0,12"), Final("OK")]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            b'\r\n+QIURC: "recv",2,4\r\ntest\r\n',
            Payload('+QIURC: "recv",2,4', b"test", 2, solicited=False),
        ),
        (
            b"\r\nRECV FROM:10.0.0.1:8888\r\n+IPD3\r\nOK\r\r\n",
            Payload("+IPD3", b"OK\r", None, solicited=False),
        ),
        (
            b"\r\n+RECEIVE,1,2\r\n\r\n\r\n",
            Payload("+RECEIVE,1,2", b"\r\n", 1, solicited=False),
        ),
    ],
)
def test_push_headers_announce_payloads(data: bytes, expected: Payload) -> None:
    events = ATReader().feed(data)

    assert expected in events


def test_buffer_mode_notice_has_no_payload() -> None:
    events = ATReader().feed(b'\r\n+QIURC: "recv",0\r\n\r\n+QIURC: "closed",0\r\n')

    assert events == [Urc('+QIURC: "recv",0'), Urc('+QIURC: "closed",0')]


def test_boot_urcs_during_a_command_are_urcs() -> None:
    data = b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\nAT+CGREG?\r\r\n"
    events = answer("AT+CGREG?", data + b"+CGREG: 0,1\r\n\r\nOK\r\n")

    assert events == [
        Urc("RDY"),
        Urc("+CFUN: 1"),
        Urc("+CPIN: READY"),
        Echo("AT+CGREG?"),
        Info("+CGREG: 0,1"),
        Final("OK"),
    ]


def test_compound_command_answer_prefixes() -> None:
    assert answer_prefixes("ATI;+CSQ;+CPIN?") == ("+CSQ:", "+CPIN:")
    assert answer_prefixes("at+cgreg?") == ("+CGREG:",)
    assert answer_prefixes("ATE0") == ()


def test_unended_line_is_a_protocol_error_until_resync() -> None:
    reader = ATReader(max_line=16)

    with pytest.raises(ATProtocolError, match="no CR LF"):
        reader.feed(b"x" * 40)
    with pytest.raises(ATProtocolError):
        reader.feed(b"\r\nOK\r\n")
    reader.resync()

    assert reader.feed(b"\r\nOK\r\n") == [Final("OK")]


def test_announced_payload_beyond_the_limit_is_a_protocol_error() -> None:
    reader = ATReader(max_payload=100)

    with pytest.raises(ATProtocolError, match="payload too long"):
        reader.feed(b"\r\n+IPD101\r\n")
    with pytest.raises(ATProtocolError, match="payload too long"):
        ATReader().feed(b"\r\n+QIRD: " + b"9" * 3000 + b"\r\n")


def test_bytes_outside_ascii_are_kept_as_text() -> None:
    events = ATReader().feed(b"\r\n\xff\xfe+CSQ\x00\r\n")

    assert events == [Urc("\xff\xfe+CSQ\x00")]


def test_a_second_final_result_with_nothing_pending_is_still_reported() -> None:
    reader = ATReader()
    reader.command_sent("AT+CIPSEND=1,10", expects_prompt=True)

    events = reader.feed(b"\r\n+CIPERROR: 4\r\n\r\nERROR\r\n\r\nERROR\r\n")

    assert events == [Info("+CIPERROR: 4"), Final("ERROR"), Final("ERROR")]
    assert reader.pending is None


# The rule, checked with Hypothesis: any bytes, split anywhere, with any commands
# sent in between, give events or ATProtocolError, nothing else; and where the bytes
# are split does not change the events.

TOKENS = [
    b"\r\n",
    b"\r",
    b"\n",
    b"OK",
    b"ERROR",
    b"SEND OK",
    b"+CME ERROR: 14",
    b">",
    b"> ",
    b"+QIRD: 3",
    b"+QIRD: 3,2,1",
    b"+CIPRXGET: 2,0,5,0",
    b"+CIPRXGET: 1,0",
    b'+QIURC: "recv",0,4',
    b'+QIURC: "recv",0',
    b"+IPD2",
    b"+RECEIVE,1,3",
    b"+QIRD: 99999999999",
    b"AT+CSQ\r",
    b"+CSQ: 1,2",
    b"RDY",
    b"\x00\xff",
    b"+CMS ERROR: 500",
    b"CONNECT",
    b"NO CARRIER",
    b"RECV FROM:10.0.0.1:5000",
    b"+CIPRXGET: 2,0,0,0",
    b"+CGEV: NW PDN DEACT 1",
]
COMMANDS = ["AT+CSQ", "AT+QIRD=0,1500", "AT+CIPSEND=0,5", "AT+QISEND=0,4", "ATI"]

chunks = st.one_of(
    st.binary(max_size=40),
    st.lists(st.sampled_from(TOKENS), max_size=12).map(b"".join),
)
steps = st.lists(st.one_of(chunks, st.sampled_from(COMMANDS)), max_size=12)


def run(
    script: list[bytes | str], cuts: list[int]
) -> tuple[list[ATEvent], ATProtocolError | None]:
    reader = ATReader(max_line=48, max_payload=64)
    events: list[ATEvent] = []
    try:
        for step in script:
            if isinstance(step, str):
                reader.command_sent(step, expects_prompt="SEND" in step)
                continue
            for piece in pieces(step, cuts):
                reader.receive_data(piece)
                while (event := reader.next_event()) is not None:
                    events.append(event)
    except ATProtocolError as error:
        return events, error
    return events, None


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=400, deadline=None)
@given(script=steps, cuts=st.lists(st.integers(0, 1000), max_size=30))
def test_any_bytes_split_anywhere_give_the_same_events_or_our_error(
    script: list[bytes | str], cuts: list[int]
) -> None:
    whole, whole_error = run(script, [])
    split, split_error = run(script, cuts)

    assert split == whole
    assert (split_error is None) == (whole_error is None)


@settings(max_examples=100, deadline=None)
@given(script=steps)
def test_one_byte_at_a_time_gives_the_same_events(script: list[bytes | str]) -> None:
    whole, whole_error = run(script, [])
    bytewise, bytewise_error = run(script, list(range(1000)))

    assert bytewise == whole
    assert (bytewise_error is None) == (whole_error is None)
