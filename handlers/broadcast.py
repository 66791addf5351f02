"""/broadcast: an admin writes one announcement (text, or a photo or document with a caption)
to everyone registered for a session, sees it as they will, then sends or cancels.

    /broadcast ─▶ (choose a session) ─▶ writing ─▶ confirming ─┬─ send ─▶ queued for the worker
                                                               └─ cancel, /cancel

Access is declared in handlers.get_routers (admins in private chats only).
"""

from __future__ import annotations

import logging
from contextlib import suppress
from functools import partial

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot.domain.clock import Clock
from bot.domain.events import Event, EventCatalog
from bot.domain.texts import t, tn
from handlers.keyboards import AdminAction, AdminCallback, broadcast_keyboard, events_keyboard
from handlers.states import BroadcastForm
from storage.broadcasts import Broadcasts
from storage.fsm import end_in, transition
from storage.outbox import Media

logger = logging.getLogger(__name__)

MAX_TEXT = 4096
MAX_CAPTION = 1024  # what a bot may send under a photo or document


async def broadcast_started(
    message: Message, bot: Bot, state: FSMContext, catalog: EventCatalog, broadcasts: Broadcasts
) -> None:
    events = list(catalog.events)
    if not events:
        await message.answer(t("no_events"))
    elif len(events) == 1:
        await ask_broadcast_text(message.chat.id, events[0], bot, state, broadcasts)
    else:
        await message.answer(
            t("choose_event_admin"),
            reply_markup=events_keyboard(events, AdminAction.broadcast_event),
        )


async def broadcast_event_chosen(
    callback: CallbackQuery,
    callback_data: AdminCallback,
    state: FSMContext,
    catalog: EventCatalog,
    broadcasts: Broadcasts,
    bot: Bot,
) -> None:
    await callback.answer()
    event = catalog.get(callback_data.event_id)
    if event is None:
        await bot.send_message(callback.from_user.id, t("event_not_found"))
        return
    await ask_broadcast_text(callback.from_user.id, event, bot, state, broadcasts)


async def ask_broadcast_text(
    chat_id: int, event: Event, bot: Bot, state: FSMContext, broadcasts: Broadcasts
) -> None:
    count = await broadcasts.recipients(event.id)
    if count == 0:
        await state.clear()
        await bot.send_message(chat_id, t("broadcast_nobody", title=event.title))
        return
    await transition(state, BroadcastForm.writing, {"event_id": event.id})
    await bot.send_message(chat_id, t("broadcast_write", title=event.title, count=count))


def _broadcast_media(message: Message) -> Media | None:
    if message.photo:
        return Media("photo", message.photo[-1].file_id)  # the largest size
    if message.document:
        return Media("document", message.document.file_id)
    return None


async def broadcast_written(
    message: Message, bot: Bot, state: FSMContext, catalog: EventCatalog, broadcasts: Broadcasts
) -> None:
    """The announcement: a text, or a photo or document with an optional caption. The
    preview is exactly what registrants will get, with the buttons under it."""
    media = _broadcast_media(message)
    if media is None and not message.text:
        await message.answer(t("broadcast_text_only"))
        return
    if message.text and message.text.startswith("/"):
        # /me, /help and the like typed mid-way: not an announcement for everyone.
        await message.answer(t("broadcast_not_a_command"))
        return
    # html_text keeps the admin's own bold, italics and links, with everything else escaped;
    # it is the caption's for a photo or document.
    text = message.html_text if message.text or message.caption else ""
    if media is None and len(message.text or "") > MAX_TEXT:
        await message.answer(t("broadcast_too_long"))
        return
    if media is not None and len(message.caption or "") > MAX_CAPTION:
        await message.answer(t("broadcast_caption_too_long"))
        return
    event_id = (await state.get_data())["event_id"]
    event = catalog.get(event_id)
    count = await broadcasts.recipients(event_id)
    data = {"event_id": event_id, "text": text}
    if media is not None:
        data |= {"media_kind": media.kind, "media_file_id": media.file_id}
    await transition(state, BroadcastForm.confirming, data)
    title = event.title if event else event_id
    await message.answer(tn("broadcast_preview", count, count=count, title=title))
    markup = broadcast_keyboard(event_id, count)
    caption = text or None
    if media is None:
        await message.answer(text, reply_markup=markup)
    elif media.kind == "photo":
        await bot.send_photo(message.chat.id, media.file_id, caption=caption, reply_markup=markup)
    else:
        await bot.send_document(
            message.chat.id, media.file_id, caption=caption, reply_markup=markup
        )


async def broadcast_awaiting_button(message: Message) -> None:
    await message.answer(t("broadcast_press_button"))


async def broadcast_confirmed(
    callback: CallbackQuery,
    state: FSMContext,
    catalog: EventCatalog,
    broadcasts: Broadcasts,
    bot: Bot,
    clock: Clock,
) -> None:
    data = await state.get_data()
    # Delivered again after a crash, the query is answered already or too old, and Telegram
    # refuses a second answer: the announcement must not depend on it.
    with suppress(TelegramBadRequest):
        await callback.answer()
    event = catalog.get(data["event_id"])
    media = Media(data["media_kind"], data["media_file_id"]) if "media_kind" in data else None
    # The form ends in the broadcast's own transaction: if the write fails, the admin can
    # press the button again; if the update comes again after it, nothing is sent twice.
    broadcast = await broadcasts.create(
        event_id=data["event_id"], admin_chat_id=callback.from_user.id, text=data["text"],
        now=clock(), media=media, alongside=partial(end_in, context=state),
    )  # fmt: skip
    logger.info("Broadcast %d queued for %d registrants", broadcast.id, broadcast.total)
    if isinstance(callback.message, Message):
        await callback.message.edit_reply_markup(reply_markup=None)
    progress = await bot.send_message(
        callback.from_user.id,
        t(
            "broadcast_progress",
            title=event.title if event else broadcast.event_id,
            done=0,
            total=broadcast.total,
        ),
    )
    await broadcasts.set_progress_message(broadcast.id, progress.message_id)


async def broadcast_cancelled(callback: CallbackQuery, state: FSMContext, bot: Bot) -> None:
    await state.clear()
    await callback.answer()
    if isinstance(callback.message, Message):
        await callback.message.edit_reply_markup(reply_markup=None)
    await bot.send_message(callback.from_user.id, t("broadcast_cancelled"))


async def broadcast_cancelled_by_command(message: Message, state: FSMContext) -> None:
    await state.clear()
    await message.answer(t("broadcast_cancelled"))


def create_router() -> Router:
    router = Router(name="broadcast")
    # After the admin commands (handlers/admin.py): /help or /stats typed while writing is
    # that command, not the announcement.
    router.message.register(broadcast_started, Command("broadcast"))
    router.message.register(
        broadcast_cancelled_by_command, Command("cancel"), StateFilter(BroadcastForm)
    )
    router.message.register(broadcast_written, StateFilter(BroadcastForm.writing))
    router.message.register(broadcast_awaiting_button, StateFilter(BroadcastForm.confirming))
    router.callback_query.register(
        broadcast_event_chosen, AdminCallback.filter(F.action == AdminAction.broadcast_event)
    )
    router.callback_query.register(
        broadcast_confirmed,
        StateFilter(BroadcastForm.confirming),
        AdminCallback.filter(F.action == AdminAction.broadcast_send),
    )
    router.callback_query.register(
        broadcast_cancelled,
        StateFilter(BroadcastForm.confirming),
        AdminCallback.filter(F.action == AdminAction.broadcast_cancel),
    )
    return router
