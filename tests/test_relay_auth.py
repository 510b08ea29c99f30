"""Optional authentication: a token per card name, from a TOML file."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from relayclient_raw import open_cards, running_relay

from relayserver.auth import Authenticator, load_tokens
from relayserver.errors import ConfigError

TOKENS = {"A": "alpha-secret", "B": "bravo-secret"}


def test_tokens_are_read_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "cards.toml"
    path.write_text('A = "alpha-secret"\n"card 7" = "x"\n')
    assert load_tokens(path) == {"A": "alpha-secret", "card 7": "x"}


@pytest.mark.parametrize("text", ["A = 1\n", "A = \n", 'A = ""\n', "[A]\nb = 'x'\n"])
def test_a_token_file_that_is_not_name_to_token_is_refused(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "cards.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"cards\.toml"):
        load_tokens(path)


def test_a_missing_token_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_tokens(tmp_path / "absent.toml")


def test_without_tokens_everyone_may_claim_anything() -> None:
    auth = Authenticator(None)
    assert not auth.enabled
    assert auth.allows("A", None)


async def test_the_right_token_connects() -> None:
    async with running_relay(tokens=TOKENS) as relay:
        (a,) = await open_cards(relay.port, 1)
        await a.request(
            b"{'action':'connect','from':'A','token':'alpha-secret'}",
            b"connect_success",
        )
        assert relay.cards() == ["A"]
        await a.close()


async def test_a_wrong_or_missing_token_is_refused_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running_relay(tokens=TOKENS) as relay:
        (a,) = await open_cards(relay.port, 1)
        with caplog.at_level(logging.WARNING, logger="relayserver"):
            await a.request(
                b"{'action':'connect','from':'A','token':'bravo-secret'}",
                b"A not authorized",
            )
            await a.request(b"{'action':'connect','from':'A'}", b"A not authorized")
            await a.request(
                b"{'action':'connect','from':'C','token':'x'}", b"C not authorized"
            )
        assert relay.cards() == []
        refusals = [
            r.getMessage() for r in caplog.records if "refused" in r.getMessage()
        ]
        assert refusals == [
            "card[A]: connect refused, wrong token",
            "card[A]: connect refused, no token",
            "card[C]: connect refused, wrong token",
        ]
        # The connection stays open, so the card can retry with the right token.
        await a.request(
            b"{'action':'connect','from':'A','token':'alpha-secret'}",
            b"connect_success",
        )
        await a.close()


async def test_a_refused_connect_does_not_take_the_name_from_its_holder() -> None:
    async with running_relay(tokens=TOKENS) as relay:
        holder, intruder, b = await open_cards(relay.port, 3)
        await holder.request(
            b"{'action':'connect','from':'A','token':'alpha-secret'}",
            b"connect_success",
        )
        await intruder.request(
            b"{'action':'connect','from':'A','token':'guess'}", b"A not authorized"
        )
        await b.request(
            b"{'action':'connect','from':'B','token':'bravo-secret'}",
            b"connect_success",
        )
        await b.request(b"{'action':'send','to':'A','message':'hi'}", b"send_success")
        await holder.expect(b"hi")
        for card in (holder, intruder, b):
            await card.close()


async def test_with_tokens_a_card_cannot_send_before_connecting() -> None:
    async with running_relay(tokens=TOKENS) as relay:
        anonymous, b = await open_cards(relay.port, 2)
        await b.request(
            b"{'action':'connect','from':'B','token':'bravo-secret'}",
            b"connect_success",
        )
        await anonymous.request(
            b"{'action':'send','to':'B','message':'hi'}", b"connect first"
        )
        await anonymous.send(b"{'action':'send','to':'B','message':'hi','proto':2}")
        await anonymous.expect(b"connect first")
        # B got nothing: its next bytes are the reply to its own request.
        await b.request(b"{'action':'send','to':'Z','message':'x'}", b"Z not connect")
        await anonymous.close()
        await b.close()


async def test_v2_refusals_are_json_errors() -> None:
    async with running_relay(tokens=TOKENS) as relay:
        a, anonymous = await open_cards(relay.port, 2)
        reply = await a.connect_v2("A", token="nope", id=3)
        assert reply == {"error": "not authorized", "card": "A", "id": 3}
        reply = await a.connect_v2("A", token="alpha-secret", id=4)
        assert reply["ok"] == "connect"
        await a.send(b"{'action':'send','to':'A','message':'x','id':5}")
        assert await a.line() == {"from": "A", "message": "x"}
        assert await a.line() == {"ok": "send", "id": 5}
        await anonymous.close()
        await a.close()


async def test_start_up_says_when_anyone_may_claim_any_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="relayserver"):
        async with running_relay():
            pass
        async with running_relay(tokens=TOKENS):
            pass
    messages = [r.getMessage() for r in caplog.records]
    assert sum("any client may claim any card name" in m for m in messages) == 1
    assert sum("authentication off" in m for m in messages) == 1
    assert sum("authentication on" in m for m in messages) == 1
