"""Every recording of a real module, replayed through the AT reader.

Each recording is fed whole and one byte at a time; both must give the events a
person reading the recording expects. ``tests/transcript.py`` turns the ``> ``/``< ``
format into bytes. Comments below point at what a recording shows that is easy to
get wrong.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from transcript import TRANSCRIPTS, replay

EXPECTED: dict[str, list[str]] = {
    # A compound command line is answered by each of its commands, one final OK.
    "ec20-01": [
        "echo AT",
        "final OK",
        "echo ATE0",
        "final OK",
        "info Quectel",
        "info EC20F",
        "info Revision: EC20CEFDR02A09M4G",
        "info SubEdition: V04",
        "info +CSQ: 14,99",
        "info +CPIN: READY",
        "info +COPS: 0",
        "info +CGREG: 0,0",
        "final OK",
        "final OK",
    ],
    # A brown-out reboot while AT+CGREG? waits: boot URCs, then echo is back on.
    "ec21-06": [
        "info +CPIN: READY",
        "final OK",
        "urc +CPIN: READY",
        "urc +QUSIM: 1",
        "urc +QIND: SMS DONE",
        "urc RDY",
        "urc +CFUN: 1",
        "urc +CPIN: READY",
        "urc +QUSIM: 1",
        "urc +QIND: SMS DONE",
        "urc +QIND: PB DONE",
        "echo AT+CGREG?",
        "info +CGREG: 0,1",
        "final OK",
        "echo AT+CREG?",
        "info +CREG: 0,1",
        "final OK",
        "echo AT+CGREG?",
        "info +CGREG: 0,1",
        "final OK",
        "echo AT+CEREG?",
        "info +CEREG: 0,1",
        "final OK",
        'echo AT+QICSGP=1,1,"soracom.io","sora","sora",1',
        "final OK",
        "final ERROR",
    ],
    # The "> " prompt ends no line; its space is left over before SEND OK.
    "ec21-08": [
        "final OK",
        "final OK",
        "urc +QIOPEN: 0,0",
        "prompt",
        "final SEND OK",
        "info +QIRD: 0",
        "final OK",
        "info +QIRD: 0",
        "final OK",
        "info +QIRD: 0",
        "final OK",
    ],
    "ec25-04": [
        "echo AT+MODE=2",
        "final ERROR",
        "echo AT+CMEE=1",
        "final OK",
    ],
    "ec25-05": [
        "info +CPIN: READY",
        "final OK",
        "info +CSQ: 14,99",
        "final OK",
        'info +COPS: 1,0,"CHN-UNICOM",7',
        "final OK",
        "info +CREG: 0,1",
        "final OK",
        'info +QENG: "servingcell","NOCONN","LTE","FDD",460,01,19A358C,366,100,'
        "1,5,5,774E,-108,-5,-83,9,13",
        "final OK",
    ],
    "ec2x-02": [
        "echo AT+CSQ",
        "info +CSQ: 19,99",
        "final OK",
        "echo AT",
        "final OK",
        "echo AT",
        "final OK",
    ],
    # "+QIRD: 4" then 4 counted bytes; the recording shows only the first (0x20),
    # so the CR LF framing after it is counted into the payload here.
    "related-bg96-01": [
        "final OK",
        "urc +QIOPEN: 0,0",
        "prompt",
        "final SEND OK",
        "info +QIRD: 0,0,0",
        "final OK",
        'info +QISTATE: 0,"TCP","104.155.82.190",1883,22742,3,1,0,0,"uart1"',
        "final OK",
        "info +QIRD: 0,0,0",
        "final OK",
        'info +QISTATE: 0,"TCP","104.155.82.190",1883,22742,3,1,0,0,"uart1"',
        "final OK",
        'urc +QIURC: "recv",0',
        "info +QIRD: 4,0,4",
        "final OK",
        "payload +QIRD: 4 b' \\r\\n\\r'",
        "final OK",
        "info +QIRD: 4,4,0",
        "final OK",
        'info +QISTATE: 0,"TCP","104.155.82.190",1883,22742,3,1,0,0,"uart1"',
        "final OK",
        "final OK",
        "final ERROR",
        "final OK",
    ],
    "sim7600-01": [
        "urc +CPIN: READY",
        "urc SMS DONE",
        "urc PB DONE",
        'urc +CMTI: "SM",4',
        "info +CSQ: 31,99",
        "final OK",
        "info +CREG: 0,1",
        "final OK",
        "info +CEREG: 0,1",
        "final OK",
        'info +COPS: 0,0,"Mint",7',
        "final OK",
        "info +CGATT: 1",
        "final OK",
        'info +CGDCONT: 1,"IPV4V6","fast.t-mobile.com",'
        '"0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0",0,0,0,0',
        'info +CGDCONT: 2,"IPV4V6","ims","0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0",0,0,0,0',
        'info +CGDCONT: 3,"IPV4V6","sos","0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0",0,0,0,1',
        'info +CGDCONT: 4,"IPV4V6","tmus","0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0",0,0,0,0',
        "final OK",
        "info +CGACT: 1,1",
        "info +CGACT: 2,1",
        "info +CGACT: 3,0",
        "info +CGACT: 4,0",
        "final OK",
        "info +CGACT: (0,1)",
        "info +CNMP: 38",
        "final OK",
        "final ERROR",
        "final OK",
        "urc +CPING: 3,0,0,0,0,0,0",
        "info +CDNSGIP: 0,10",
        "final ERROR",
        "final OK",
        "final OK",
        "final OK",
        "final ERROR",
    ],
    "sim7600-02": [
        "urc RDY",
        "urc +CPIN: READY",
        "urc SMS DONE",
        "urc PB DONE",
        "echo AT",
        "final OK",
    ],
    "sim7600-03": [
        "urc RDY",
        "urc +CPIN: READY",
    ],
    # SIM busy, then a +CPIN: READY with no OK, then a proper answer; NETOPEN
    # succeeds with the later URC, not with its OK.
    "sim7600-04": [
        "final OK",
        "final +CME ERROR: SIM busy",
        "info +CPIN: READY",
        "info +CPIN: READY",
        "final OK",
        "info Manufacturer: SIMCOM INCORPORATED",
        "info Model: SIMCOM_SIM7600G-H",
        "info Revision: SIM7600G_V2.0.2",
        "info IMEI: xxxxxxxxxxxxx",
        "info +GCAP: +CGSM",
        "final OK",
        "final OK",
        "info +CNMP: 2",
        "final OK",
        "info +CGREG: 0,2",
        "final OK",
        "echo AT+CSQ",
        "info +CSQ: 99,99",
        "final OK",
        "echo AT+CGREG?",
        "info +CGREG: 0,2",
        "final OK",
        "echo AT+CSQ",
        "info +CSQ: 31,99",
        "final OK",
        "info +CGREG: 0,2",
        "final OK",
        "info +CGREG: 0,2",
        "final OK",
        "info +CGREG: 0,1",
        "final OK",
        "info +CPSI: LTE,Online,460-11,0x775C,117004595,399,EUTRAN-BAND3,"
        "1650,5,5,-83,-835,-552,15",
        'info +CGDCONT: 1,"IP","","0.0.0.0",0,0,0,0',
        'info +CGDCONT: 2,"IPV4V6","ims","0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0",0,0,0,0',
        'info +CGDCONT: 3,"IPV4V6","","0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0",0,0,0,1',
        "final OK",
        "final OK",
        "urc +NETOPEN: 0",
        "info +IPADDR: 10.23.156.36",
    ],
    "sim7600-05": [
        "final OK",
        "urc +CIPOPEN: 0,0",
    ],
    # An information line followed by ERROR answers CIPOPEN: a failure.
    "sim7600-06": [
        "info +CGREG: 0,5",
        "final OK",
        "final OK",
        "final OK",
        "urc +NETOPEN: 0",
        "info +CIPOPEN: 1,3",
        "final ERROR",
    ],
    # The CIPEVENT URC arrives between a command and its echo.
    "sim7600-08": [
        "final OK",
        "echo AT+CIPCLOSE?",
        "info +CIPCLOSE: 0,1,0,0,0,0,0,0,0,0",
        "final OK",
        "echo AT+CIPRXGET=4,1",
        "info +CIPRXGET: 4,1,0",
        "final OK",
        "echo AT+CIPCLOSE?",
        "info +CIPCLOSE: 0,1,0,0,0,0,0,0,0,0",
        "final OK",
        "echo AT+CIPRXGET=4,1",
        "info +CIPRXGET: 4,1,0",
        "final OK",
        "echo AT+CIPCLOSE?",
        "info +CIPCLOSE: 0,1,0,0,0,0,0,0,0,0",
        "final OK",
        "urc +CIPEVENT: NETWORK CLOSED UNEXPECTEDLY",
        "echo AT+CIPRXGET=4,1",
        "info +CIPRXGET: 4,1,0",
        "final OK",
        "echo AT+CIPCLOSE?",
        "info +CIPCLOSE: 0,0,0,0,0,0,0,0,0,0",
        "final OK",
        "echo AT+CIPRXGET=4,1",
        "info +CIPRXGET: 4,1,0",
        "final OK",
        "echo AT+CIPCLOSE?",
        "info +CIPCLOSE: 0,0,0,0,0,0,0,0,0,0",
        "final OK",
        "urc SMS DONE",
    ],
    # Prompt, payload, OK first, and only then the +CIPSEND result.
    "sim7600-09": [
        "info +CIPRXGET: 4,0,0",
        "final OK",
        "info +CIPCLOSE: 1,0,0,0,0,0,0,0,0,0",
        "final OK",
        "prompt",
        "final OK",
        "urc +CIPSEND: 0,31,31",
        "final OK",
        "final OK",
        "final OK",
        "info +CGREG: 0,1",
        "final OK",
        "info +CIPRXGET: 4,0,0",
        "final OK",
        "info +CIPCLOSE: 1,0,0,0,0,0,0,0,0,0",
        "final OK",
        "info +CGREG: 0,1",
        "final OK",
        "info +CIPRXGET: 4,0,0",
        "final OK",
        "info +CIPCLOSE: 1,0,0,0,0,0,0,0,0,0",
        "final OK",
    ],
    "sim7600-11": [
        "info +CPIN: READY",
        "final OK",
        "info +CGREG: 0,1",
        "final OK",
        "info +CSQ: 30,99",
        "final OK",
        'info +COPS: 0,0,"Mint",7',
        "final OK",
        "final ERROR",
    ],
    "sim7600-12": [
        "info +CIPERROR: 4",
        "final ERROR",
        "final ERROR",
    ],
}


def recordings() -> list[Path]:
    return sorted(TRANSCRIPTS.glob("*.txt"))


def key(path: Path) -> str:
    return next(k for k in EXPECTED if path.name.startswith(k))


def test_every_recording_has_expectations() -> None:
    names = [path.name for path in recordings()]

    assert len(names) == len(EXPECTED)
    assert all(any(n.startswith(k) for n in names) for k in EXPECTED)


@pytest.mark.parametrize("path", recordings(), ids=lambda p: p.name[:-4])
def test_recording_fed_whole(path: Path) -> None:
    assert replay(path, bytewise=False) == EXPECTED[key(path)]


@pytest.mark.parametrize("path", recordings(), ids=lambda p: p.name[:-4])
def test_recording_fed_one_byte_at_a_time(path: Path) -> None:
    assert replay(path, bytewise=True) == EXPECTED[key(path)]
