"""A session whose every text is as long as the events file allows: every message still fits.

The events file limits its texts (bot.domain.events.MAX_LENGTHS) so that the longest greeting,
consent question, summary, card and digest stay within Telegram's 4096 characters, HTML
escaping included: the values here are full of "&" and "<", which escaping makes longer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.domain.events import MAX_LENGTHS
from bot.sender import Limits, Sender
from tests.client import TelegramUser
from tests.fake_telegram import MAX_TEXT_LENGTH, FakeTelegram
from tests.helpers import ADMIN_ID, ORGANIZER_CHAT_ID, fill_form


def longest(key: str) -> str:
    """The longest text the file allows for `key`: escaping makes "&<" five times longer."""
    return ("Т&<" * MAX_LENGTHS[key])[: MAX_LENGTHS[key]]


def english(key: str) -> str:
    """The longest English text the file allows for `key`, full of what escaping lengthens."""
    return ("E&<" * MAX_LENGTHS[key])[: MAX_LENGTHS[key]]


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.toml"
    path.write_text(
        f"""
[[events]]
id = "forum-2026"
title = "{longest("title")}"
starts_at = 2026-12-10T12:00:00
timezone = "Europe/Moscow"
registration_deadline = 2026-12-08T23:59:00
location = "{longest("location")}"
description = "{longest("description")}"
join_url = "https://example.org/{"j" * (MAX_LENGTHS["join_url"] - 20)}"
contact = "{longest("contact")}"
operator = "{longest("operator")}"
privacy_policy = "{longest("privacy_policy")}"
privacy_policy_version = "{"v" * MAX_LENGTHS["privacy_policy_version"]}"
title_en = "{english("title")}"
location_en = "{english("location")}"
description_en = "{english("description")}"
privacy_policy_en = "{english("privacy_policy")}"
""",
        encoding="utf-8",
    )
    return path


async def test_every_message_fits_when_every_event_text_is_longest(
    user: TelegramUser, make_user, fake: FakeTelegram, dispatcher, bot, clock
) -> None:  # type: ignore[no-untyped-def]
    await fill_form(user)
    await user.click("Подтвердить")
    await user.send("/me")
    admin: TelegramUser = make_user(ADMIN_ID, first_name="Админ", username="admin")
    await admin.send("/digest")
    await admin.send("/stats")
    sender = Sender(bot, dispatcher["outbox"], clock, Limits(private_interval=0, group_interval=0))
    await sender.start()
    await sender.idle()
    await sender.stop(grace=1)

    sent = [call for call in fake.calls if call.method in ("sendMessage", "editMessageText")]
    assert [call for call in sent if call.error_code] == []
    texts = [message.text or "" for message in fake.messages_to(user.user_id)]
    assert any(longest("title") in text for text in texts)  # shown whole, not cut
    assert any(longest("operator") in text for text in texts)  # in /me
    assert max(len(text) for text in texts) <= MAX_TEXT_LENGTH
    [card] = fake.messages_to(ORGANIZER_CHAT_ID)
    assert longest("title") in (card.text or "")
    assert any(longest("title") in (m.text or "") for m in fake.messages_to(ADMIN_ID))
    row = await dispatcher["registrations"].active("forum-2026", user.user_id)
    assert row is not None and row.status == "confirmed"


async def test_every_english_message_fits_when_every_english_text_is_longest(
    make_user, fake: FakeTelegram, dispatcher, bot, clock
) -> None:  # type: ignore[no-untyped-def]
    mary: TelegramUser = make_user(2001, first_name="Mary", language_code="en")
    replies = await mary.send("/start")
    # The greeting and the consent question, the English policy whole in it.
    assert any(english("privacy_policy") in (reply.text or "") for reply in replies)
    assert max(len(reply.text or "") for reply in replies) <= MAX_TEXT_LENGTH
    await mary.click("I agree")
    await mary.send("Mary Smith")
    await mary.send("Director")
    await mary.send("Ministry of Culture")
    await mary.share_contact("447911123456")
    await mary.send("mary@example.com")
    await mary.click("Confirm")
    await mary.send("/me")

    sent = [call for call in fake.calls if call.method in ("sendMessage", "editMessageText")]
    assert [call for call in sent if call.error_code] == []
    texts = [message.text or "" for message in fake.messages_to(mary.user_id)]
    assert any(english("title") in text for text in texts)  # shown whole, not cut
    assert max(len(text) for text in texts) <= MAX_TEXT_LENGTH
    row = await dispatcher["registrations"].active("forum-2026", mary.user_id)
    assert row is not None and row.status == "confirmed"
