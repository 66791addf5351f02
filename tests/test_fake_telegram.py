import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.filters import Command, CommandStart
from aiogram.types import (
    BotCommand,
    BotCommandScopeChat,
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)

from tests.client import TelegramUser, feed_deliver, http_deliver
from tests.fake_telegram import (
    GROUP_CHAT_ID,
    JSON,
    BotAPIError,
    FakeSession,
    FakeTelegram,
    callback_query_update,
    contact_update,
    document_update,
    location_update,
    my_chat_member_update,
    photo_update,
    render_html,
    serve,
    sticker_update,
    text_update,
    user_json,
    voice_update,
)

CHAT = 42
KEYBOARD = InlineKeyboardMarkup(
    inline_keyboard=[[InlineKeyboardButton(text="Да", callback_data="yes")]]
)


async def close_quickly(session: AiohttpSession) -> None:
    # AiohttpSession.close() sleeps 250 ms for TLS shutdown; plain HTTP on loopback needs none.
    if session._session is not None:
        await session._session.close()


@pytest.fixture
def fake_api() -> FakeTelegram:
    return FakeTelegram()


# Over HTTP, each test starts a server: `make test-fast` keeps the in-process half.
@pytest.fixture(params=[pytest.param("http", marks=pytest.mark.slow), "in_process"])
async def api_bot(request: pytest.FixtureRequest, fake_api: FakeTelegram) -> AsyncIterator[Bot]:
    if request.param == "in_process":
        yield Bot(fake_api.token, session=FakeSession(fake_api))
        return
    async with serve(fake_api) as base_url:
        session = AiohttpSession(api=TelegramAPIServer.from_base(base_url))
        try:
            yield Bot(fake_api.token, session=session)
        finally:
            await close_quickly(session)


def ivan() -> JSON:
    return user_json(CHAT, first_name="Иван")


async def test_get_me_returns_the_bot_user(api_bot: Bot, fake_api: FakeTelegram) -> None:
    me = await api_bot.get_me()

    assert (me.id, me.username, me.is_bot) == (fake_api.bot_id, fake_api.bot_username, True)


async def test_send_message_records_rendered_text_and_keyboard(
    api_bot: Bot, fake_api: FakeTelegram
) -> None:
    sent = await api_bot.send_message(
        CHAT, "Привет, <b>Иван</b> &amp; Co", parse_mode="HTML", reply_markup=KEYBOARD
    )

    assert sent.reply_markup is not None
    assert sent.reply_markup.model_dump(exclude_none=True) == KEYBOARD.model_dump(exclude_none=True)
    assert sent.from_user is not None and sent.from_user.id == fake_api.bot_id
    stored = fake_api.last_message(CHAT)
    assert (stored.message_id, stored.text) == (sent.message_id, "Привет, Иван & Co")
    assert stored.source == "Привет, <b>Иван</b> &amp; Co"
    assert stored.reply_markup == {"inline_keyboard": [[{"text": "Да", "callback_data": "yes"}]]}
    call = fake_api.calls_of("sendMessage")[-1]
    assert call.params["chat_id"] == CHAT
    assert call.params["reply_markup"] == stored.reply_markup


async def test_editing_text_drops_the_inline_keyboard_and_keeps_history(
    api_bot: Bot, fake_api: FakeTelegram
) -> None:
    sent = await api_bot.send_message(CHAT, "Проверьте данные", reply_markup=KEYBOARD)

    edited = await api_bot.edit_message_text(
        "Подтверждено", chat_id=CHAT, message_id=sent.message_id
    )

    assert isinstance(edited, Message) and edited.text == "Подтверждено"
    assert edited.reply_markup is None
    stored = fake_api.last_message(CHAT)
    assert (stored.text, stored.reply_markup, stored.edits) == (
        "Подтверждено",
        None,
        ["Проверьте данные"],
    )


async def test_edit_without_changes_is_rejected_like_telegram(api_bot: Bot) -> None:
    sent = await api_bot.send_message(CHAT, "Текст", reply_markup=KEYBOARD)

    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await api_bot.edit_message_text(
            "Текст", chat_id=CHAT, message_id=sent.message_id, reply_markup=KEYBOARD
        )
    await api_bot.edit_message_reply_markup(chat_id=CHAT, message_id=sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await api_bot.edit_message_reply_markup(chat_id=CHAT, message_id=sent.message_id)


async def test_delete_message_marks_it_deleted_once(api_bot: Bot, fake_api: FakeTelegram) -> None:
    sent = await api_bot.send_message(CHAT, "Временное")

    assert await api_bot.delete_message(CHAT, sent.message_id) is True

    assert fake_api.messages[-1].deleted
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await api_bot.delete_message(CHAT, sent.message_id)


async def test_send_document_keeps_the_uploaded_bytes(api_bot: Bot, fake_api: FakeTelegram) -> None:
    content = "ФИО;Телефон\nИван;+79991234567\n".encode()

    sent = await api_bot.send_document(
        CHAT, BufferedInputFile(content, filename="registrations.csv"), caption="Выгрузка"
    )

    assert sent.document is not None and sent.document.file_name == "registrations.csv"
    stored = fake_api.last_message(CHAT)
    assert (stored.document, stored.filename, stored.caption) == (
        content,
        "registrations.csv",
        "Выгрузка",
    )


async def test_get_updates_returns_unconfirmed_and_offset_confirms(
    api_bot: Bot, fake_api: FakeTelegram
) -> None:
    first = fake_api.push_update(text_update(ivan(), "/start", message_id=1))
    second = fake_api.push_update(text_update(ivan(), "Иван", message_id=2))

    assert (first, second) == (1, 2)
    assert [update.update_id for update in await api_bot.get_updates()] == [first, second]
    assert [update.update_id for update in await api_bot.get_updates(offset=second)] == [second]

    await fake_api.wait_confirmed(first, timeout=0.1)
    with pytest.raises(AssertionError, match=f"update {second} was not confirmed"):
        await fake_api.wait_confirmed(second, timeout=0.05)


async def test_get_updates_long_poll_wakes_up_on_push(api_bot: Bot, fake_api: FakeTelegram) -> None:
    poll = asyncio.create_task(api_bot.get_updates(offset=1, timeout=5))
    await asyncio.sleep(0.05)
    assert not poll.done()

    update_id = fake_api.push_update(text_update(ivan(), "/start", message_id=1))

    updates = await asyncio.wait_for(poll, timeout=1)
    assert [update.update_id for update in updates] == [update_id]
    assert updates[0].message is not None and updates[0].message.text == "/start"


async def test_delete_webhook_can_drop_pending_updates(
    api_bot: Bot, fake_api: FakeTelegram
) -> None:
    update_id = fake_api.push_update(text_update(ivan(), "старое", message_id=1))

    await api_bot.delete_webhook(drop_pending_updates=True)

    assert await api_bot.get_updates() == []
    with pytest.raises(AssertionError, match="dropped"):
        await fake_api.wait_confirmed(update_id, timeout=1)


async def test_unknown_method_raises(api_bot: Bot, fake_api: FakeTelegram) -> None:
    with pytest.raises(TelegramNotFound, match="method not found"):
        await api_bot.get_chat(CHAT)

    assert (fake_api.calls[-1].method, fake_api.calls[-1].error_code) == ("getChat", 404)


async def test_wrong_token_is_unauthorized(api_bot: Bot) -> None:
    stranger = Bot("123456:wrong-token", session=api_bot.session)

    with pytest.raises(TelegramUnauthorizedError):
        await stranger.get_me()


async def test_injected_429_raises_retry_after_once(api_bot: Bot, fake_api: FakeTelegram) -> None:
    fake_api.fail(
        "sendMessage", code=429, description="Too Many Requests: retry after 3", retry_after=3
    )

    with pytest.raises(TelegramRetryAfter) as raised:
        await api_bot.send_message(CHAT, "Первая попытка")

    assert raised.value.retry_after == 3
    await api_bot.send_message(CHAT, "Вторая попытка")
    assert [message.text for message in fake_api.messages] == ["Вторая попытка"]


async def test_injected_failure_matches_only_its_chat(api_bot: Bot, fake_api: FakeTelegram) -> None:
    fake_api.fail(None, code=400, description="Bad Request: chat not found", chat_id=5, times=2)

    await api_bot.send_message(6, "Другому чату можно")
    for _ in range(2):
        with pytest.raises(TelegramBadRequest, match="chat not found"):
            await api_bot.send_chat_action(5, "typing")
    await api_bot.send_message(5, "Снова работает")


async def test_blocked_chat_is_forbidden_until_unblocked(
    api_bot: Bot, fake_api: FakeTelegram
) -> None:
    fake_api.block(CHAT)

    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await api_bot.send_message(CHAT, "Напоминание")
    await api_bot.send_message(CHAT + 1, "Другому можно")

    fake_api.unblock(CHAT)
    await api_bot.send_message(CHAT, "Напоминание")


class ManualClock:
    """Monotonic seconds that a test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def send_at(fake: FakeTelegram, clock: ManualClock, at: float, chat_id: int) -> int | None:
    """Send one message at `at`: None if accepted, else the retry_after of the 429."""
    clock.now = at
    try:
        await fake.handle("sendMessage", {"chat_id": chat_id, "text": "Карточка"})
    except BotAPIError as error:
        assert (error.code, error.description) == (
            429,
            f"Too Many Requests: retry after {error.retry_after}",
        )
        return error.retry_after
    return None


async def test_limits_are_not_enforced_unless_asked(fake_api: FakeTelegram) -> None:
    for _ in range(40):
        await fake_api.handle("sendMessage", {"chat_id": CHAT, "text": "Сразу"})

    assert (len(fake_api.messages), fake_api.limit_violations) == (40, 0)


async def test_private_chat_too_soon_gets_429_with_retry_after(
    api_bot: Bot, fake_api: FakeTelegram
) -> None:
    clock = ManualClock()
    fake_api.enforce_limits(clock=clock)

    await api_bot.send_message(CHAT, "Первое")
    clock.now = 0.4
    with pytest.raises(TelegramRetryAfter) as raised:
        await api_bot.send_message(CHAT, "Слишком рано")
    await api_bot.send_message(CHAT + 1, "Другому чату можно")
    await api_bot.send_chat_action(CHAT, "typing")  # only messages count
    clock.now = 1.0
    await api_bot.send_message(CHAT, "Через секунду")

    assert raised.value.retry_after == 1
    assert [m.text for m in fake_api.messages_to(CHAT)] == ["Первое", "Через секунду"]
    assert fake_api.limit_violations == 1


async def test_private_burst_is_allowed_then_the_steady_rate(fake_api: FakeTelegram) -> None:
    clock = ManualClock()
    fake_api.enforce_limits(private_per_second=2, burst=3, clock=clock)

    answers = [await send_at(fake_api, clock, at, CHAT) for at in (0, 0, 0, 0, 0.5, 0.6, 1.0)]

    assert answers == [None, None, None, 1, None, 1, None]


async def test_group_over_twenty_in_a_sliding_minute_gets_429(fake_api: FakeTelegram) -> None:
    clock = ManualClock()
    fake_api.enforce_limits(clock=clock)

    # 20 a minute, but 1 a second is not a limit in groups here: a burst of 20 is allowed.
    first_twenty = [await send_at(fake_api, clock, i * 0.1, GROUP_CHAT_ID) for i in range(20)]
    assert first_twenty == [None] * 20
    assert await send_at(fake_api, clock, 2.0, GROUP_CHAT_ID) == 58
    # The window slides: at 60.0 the message sent at 0.0 has left it, the one at 0.1 has not.
    assert await send_at(fake_api, clock, 60.0, GROUP_CHAT_ID) is None
    assert await send_at(fake_api, clock, 60.05, GROUP_CHAT_ID) == 1
    assert await send_at(fake_api, clock, 60.1, GROUP_CHAT_ID) is None
    assert fake_api.limit_violations == 2
    assert len(fake_api.messages_to(GROUP_CHAT_ID)) == 22


async def test_overall_over_thirty_in_a_sliding_second_gets_429(fake_api: FakeTelegram) -> None:
    clock = ManualClock()
    fake_api.enforce_limits(clock=clock)

    answers = [await send_at(fake_api, clock, 0.5, chat_id) for chat_id in range(1, 32)]
    assert answers == [None] * 30 + [1]
    assert await send_at(fake_api, clock, 1.49, 100) == 1
    assert await send_at(fake_api, clock, 1.5, 100) is None
    assert fake_api.limit_violations == 2


async def test_telegram_rules_the_bot_must_respect(api_bot: Bot, fake_api: FakeTelegram) -> None:
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await api_bot.send_message(CHAT, "Иван <3", parse_mode="HTML")
    too_long = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Да", callback_data="x" * 65)]]
    )
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await api_bot.send_message(CHAT, "Кнопка", reply_markup=too_long)
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await api_bot.send_message(CHAT, "я" * 4097)
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await api_bot.send_message(CHAT, "😀" * 2049)  # 2049 code points, 4098 UTF-16 units
    await api_bot.send_message(CHAT, "😀" * 2048)

    query_id = fake_api.new_callback_query_id()
    await api_bot.answer_callback_query(query_id)
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await api_bot.answer_callback_query(query_id)


async def test_commands_are_stored_per_scope(api_bot: Bot, fake_api: FakeTelegram) -> None:
    await api_bot.set_my_commands([BotCommand(command="start", description="Регистрация")])
    admin_scope = BotCommandScopeChat(chat_id=CHAT)
    await api_bot.set_my_commands(
        [BotCommand(command="export", description="Выгрузка")], scope=admin_scope
    )

    assert [c["command"] for c in fake_api.commands_for()] == ["start"]
    assert [c["command"] for c in fake_api.commands_for({"type": "chat", "chat_id": CHAT})] == [
        "export"
    ]
    await api_bot.delete_my_commands()
    assert fake_api.commands_for() == []


@pytest.mark.slow  # starts the HTTP server
async def test_both_modes_send_identical_parameters() -> None:
    async def send_through(make_session: Callable[[FakeTelegram, str], Any]) -> JSON:
        fake = FakeTelegram()
        async with serve(fake) as base_url:
            session = make_session(fake, base_url)
            bot = Bot(fake.token, session=session)
            await bot.send_message(CHAT, "Текст", reply_markup=KEYBOARD, disable_notification=True)
            if isinstance(session, AiohttpSession):
                await close_quickly(session)
        return fake.calls[-1].params

    over_http = await send_through(
        lambda _fake, url: AiohttpSession(api=TelegramAPIServer.from_base(url))
    )
    in_process = await send_through(lambda fake, _url: FakeSession(fake))

    assert over_http == in_process
    assert over_http["disable_notification"] is True


@pytest.mark.parametrize(
    ("source", "visible"),
    [
        ("plain", "plain"),
        ("<b>Иван</b> <i>Петров</i>", "Иван Петров"),
        ("&lt;script&gt; &amp; &quot;q&quot; &#1046;", '<script> & "q" Ж'),
        ("AT&T", "AT&T"),
        ('<a href="https://example.org">ссылка</a>', "ссылка"),
        ('<span class="tg-spoiler">тайна</span>', "тайна"),
        ("<b><i>вложенный</i></b>", "вложенный"),
    ],
)
def test_render_html_visible_text(source: str, visible: str) -> None:
    assert render_html(source) == visible


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("Иван <3", "Unexpected character"),
        ("<script>x</script>", 'Unsupported start tag "script"'),
        ("строка<br>строка", 'Unsupported start tag "br"'),
        ("<b>жирный", "Can't find end tag"),
        ("<b>x</i>", "Unmatched end tag"),
        ("<span>x</span>", "tg-spoiler"),
    ],
)
def test_render_html_rejects_what_telegram_rejects(source: str, reason: str) -> None:
    with pytest.raises(Exception, match=reason):
        render_html(source)


def test_update_builders_parse_as_aiogram_updates() -> None:
    fake = FakeTelegram()
    user = ivan()
    bot_message = {
        "message_id": 3,
        "from": fake.bot_user,
        "chat": {"id": CHAT, "type": "private"},
        "date": 0,
        "text": "Подтвердите",
        "reply_markup": {"inline_keyboard": [[{"text": "Да", "callback_data": "yes"}]]},
    }
    cases: list[tuple[JSON, str, str | None]] = [
        (text_update(user, "/start ref", message_id=1), "message", "text"),
        (text_update(user, "/start", message_id=1, chat_id=GROUP_CHAT_ID), "message", "text"),
        (
            contact_update(user, "+79991234567", message_id=1, contact_user_id=CHAT),
            "message",
            "contact",
        ),
        (sticker_update(user, message_id=1), "message", "sticker"),
        (photo_update(user, message_id=1), "message", "photo"),
        (document_update(user, message_id=1), "message", "document"),
        (voice_update(user, message_id=1), "message", "voice"),
        (location_update(user, message_id=1), "message", "location"),
        (callback_query_update(user, bot_message, "yes", query_id="1"), "callback_query", None),
        (
            my_chat_member_update(user, fake.bot_user, old_status="member", new_status="kicked"),
            "my_chat_member",
            None,
        ),
        (
            my_chat_member_update(
                user,
                fake.bot_user,
                old_status="left",
                new_status="administrator",
                chat_id=GROUP_CHAT_ID,
            ),
            "my_chat_member",
            None,
        ),
    ]
    for payload, event_type, content_type in cases:
        update = Update.model_validate({"update_id": 1, **payload})
        assert update.event_type == event_type
        if content_type is not None:
            assert isinstance(update.event, Message)
            assert update.event.content_type == content_type

    command = Update.model_validate({"update_id": 1, **text_update(user, "/start", message_id=1)})
    assert command.message is not None and command.message.entities is not None
    assert command.message.entities[0].type == "bot_command"
    group = Update.model_validate(
        {"update_id": 1, **text_update(user, "hi", message_id=1, chat_id=GROUP_CHAT_ID)}
    )
    assert group.message is not None and group.message.chat.type == "supergroup"


@pytest.mark.slow  # starts the HTTP server
async def test_http_endpoint_accepts_get_json_and_rejects_unknown(fake_api: FakeTelegram) -> None:
    async with serve(fake_api) as base_url, aiohttp.ClientSession() as http:
        api = f"{base_url}/bot{fake_api.token}"
        async with http.get(f"{api}/getme") as response:
            assert (response.status, (await response.json())["ok"]) == (200, True)
        async with http.post(f"{api}/sendMessage", json={"chat_id": CHAT, "text": "json"}) as r:
            assert (await r.json())["result"]["chat"] == {"id": CHAT, "type": "private"}
        async with http.post(f"{api}/getChat", data={"chat_id": "42"}) as response:
            assert response.status == 404
            assert await response.json() == {
                "ok": False,
                "error_code": 404,
                "description": "Not Found: method not found",
            }
        async with http.get(f"{base_url}/bot1:wrong/getMe") as response:
            assert response.status == 401

    assert fake_api.last_message(CHAT).text == "json"


# --- the client, against a toy dispatcher ------------------------------------------------


def toy_router() -> Router:
    router = Router(name="toy")

    @router.message(CommandStart())
    async def started(message: Message) -> None:
        keyboard = InlineKeyboardMarkup(
            inline_keyboard=[
                [
                    InlineKeyboardButton(text="Да, всё верно", callback_data="confirm"),
                    InlineKeyboardButton(text="Изменить", callback_data="edit"),
                ]
            ]
        )
        await message.answer("Подтвердите данные", reply_markup=keyboard)

    @router.message(Command("phone"))
    async def phone_asked(message: Message) -> None:
        button = KeyboardButton(text="Отправить номер", request_contact=True)
        await message.answer(
            "Поделитесь номером", reply_markup=ReplyKeyboardMarkup(keyboard=[[button]])
        )

    @router.message(F.contact)
    async def phone_shared(message: Message) -> None:
        assert message.contact is not None
        await message.answer(
            f"Телефон {message.contact.phone_number}", reply_markup=ReplyKeyboardRemove()
        )

    @router.callback_query(F.data == "confirm")
    async def confirmed(query: CallbackQuery) -> None:
        if not isinstance(query.message, Message) or query.message.reply_markup is None:
            await query.answer("Уже подтверждено")
            return
        await query.message.edit_text("Подтверждено")
        await query.answer()

    @router.message()
    async def not_understood(message: Message) -> None:
        await message.answer("Не понимаю")

    return router


async def test_user_conversation_in_process(fake_api: FakeTelegram) -> None:
    bot = Bot(fake_api.token, session=FakeSession(fake_api))
    dispatcher = Dispatcher()
    dispatcher.include_router(toy_router())
    user = TelegramUser(fake_api, feed_deliver(dispatcher, bot), user_id=CHAT)

    [card] = await user.send("/start")
    assert fake_api.next_update_id() == 2  # the client stamps ids from the same counter
    assert user.buttons(card) == ["Да, всё верно", "Изменить"]
    with pytest.raises(AssertionError, match="Да, всё верно"):
        await user.click("Отмена")

    [edited] = await user.click("Да")
    assert (edited is card, edited.text, edited.edits) == (
        True,
        "Подтверждено",
        ["Подтвердите данные"],
    )
    assert await user.click_data(card, "confirm") == []
    assert fake_api.calls_of("answerCallbackQuery")[-1].params["text"] == "Уже подтверждено"

    await user.send("/phone")
    assert user.reply_keyboard is not None
    await user.share_contact("79991234567")
    assert user.last_text == "Телефон 79991234567"
    assert user.reply_keyboard is None

    for action in (user.send_sticker, user.send_photo, user.send_voice, user.send_location):
        [reply] = await action()
        assert reply.text == "Не понимаю"
    assert [m.text for m in await user.send_document()] == ["Не понимаю"]


@pytest.mark.slow  # starts the HTTP server
async def test_user_conversation_over_http_with_a_polling_bot(fake_api: FakeTelegram) -> None:
    dispatcher = Dispatcher()
    dispatcher.include_router(toy_router())
    async with serve(fake_api) as base_url:
        session = AiohttpSession(api=TelegramAPIServer.from_base(base_url))
        bot = Bot(fake_api.token, session=session)
        polling = asyncio.create_task(
            dispatcher.start_polling(
                bot, handle_as_tasks=False, handle_signals=False, close_bot_session=False
            )
        )
        try:
            user = TelegramUser(fake_api, http_deliver(fake_api, timeout=3), user_id=CHAT)
            [card] = await user.send("/start")
            [edited] = await user.click("Да, всё верно")
            assert edited is card
            assert edited.text == "Подтверждено"
            assert user.last_text == "Подтверждено"
        finally:
            await dispatcher.stop_polling()
            await polling
            await close_quickly(session)
