"""Admin commands: private chats with ADMIN_IDS only; anyone else gets a refusal that says
nothing about the data. In groups they are ignored."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Iterable
from contextlib import suppress
from datetime import date
from enum import StrEnum
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

from aiogram import Bot, F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.filters import Command, CommandObject, StateFilter, or_f
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, FSInputFile, InlineKeyboardMarkup, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.domain.clock import Clock
from bot.domain.config import Settings
from bot.domain.events import Event, EventCatalog
from bot.domain.limits import MAX_MESSAGE_LENGTH, message_length
from bot.domain.texts import Html, t
from bot.domain.timefmt import format_datetime
from bot.domain.validation import format_phone
from handlers.filters import Magic
from handlers.jobs import BackgroundJobs
from handlers.menu import ADMIN_COMMANDS as MENU_ADMIN_COMMANDS
from handlers.menu import AdminMenus
from handlers.registration import reask
from storage.broadcasts import Broadcasts
from storage.digests import Digests
from storage.export import FORMATS, export_filename
from storage.export.process import export_in_process
from storage.fsm import end_in, transition
from storage.outbox import Media
from storage.stats import AdminQueries, OutboxHealth

logger = logging.getLogger(__name__)

ADMIN_COMMANDS = tuple(name for name, _ in MENU_ADMIN_COMMANDS)
FIND_LIMIT = 10
OUTBOX_LIMIT = 10  # parked chats and failure reasons listed in /stats
MAX_TEXT = 4096
MAX_CAPTION = 1024  # what a bot may send under a photo or document
REPORT_TIMEOUT = 5.0


class BroadcastForm(StatesGroup):
    writing = State()
    confirming = State()


class AdminAction(StrEnum):
    export_event = "export"
    broadcast_event = "bevent"
    broadcast_send = "bsend"
    broadcast_cancel = "bcancel"


class AdminCallback(CallbackData, prefix="admin"):
    action: AdminAction
    event_id: str = ""


def events_keyboard(events: Iterable[Event], action: AdminAction) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for event in events:
        builder.button(
            text=event.title[:60], callback_data=AdminCallback(action=action, event_id=event.id)
        )
    builder.adjust(1)
    return builder.as_markup()


# --- menu, help, digest --------------------------------------------------------------------


async def admin_started(message: Message, bot: Bot, admin_menus: AdminMenus) -> None:
    """An admin whose menu could not be set at start-up (they had never opened the bot)
    gets it now; /start itself goes on to the participant flow."""
    assert message.from_user is not None
    await admin_menus.ensure(bot, message.from_user.id)
    raise SkipHandler


async def admin_help(message: Message) -> None:
    await message.answer(t("help") + "\n\n" + t("admin_help"))


async def digest_now(
    message: Message, digests: Digests, catalog: EventCatalog, settings: Settings, clock: Clock
) -> None:
    """The digest as the organisers would get it now, to the admin who asked only."""
    messages = await digests.compose(catalog, settings.timezone, clock())
    if not messages:
        await message.answer(t("digest_no_sessions"))
    for text in messages:
        await message.answer(text)


# --- /stats, /find -------------------------------------------------------------------------


def deadline_line(event: Event, now_local_days: int) -> str:
    if now_local_days < 0:
        return t("stats_closed")
    if now_local_days == 0:
        return t("stats_deadline_today")
    return t("stats_deadline_days", days=now_local_days)


def outbox_block(health: OutboxHealth, zone: ZoneInfo) -> str | None:
    """Parked chats and refused messages, for /stats; None when there are none."""
    lines = []
    if health.parked_count:
        lines.append(t("stats_parked_header", count=health.parked_count))
        lines += [
            t(
                "stats_parked_item",
                chat_id=chat.chat_id,
                since=format_datetime(chat.since, zone) if chat.since else t("stats_since_unknown"),
                waiting=chat.waiting,
                reason=chat.reason,
            )
            for chat in health.parked
        ]
        if health.parked_count > len(health.parked):
            lines.append(t("stats_more", count=health.parked_count - len(health.parked)))
    if health.failed_count:
        lines.append(t("stats_failed_header", count=health.failed_count))
        lines += [
            t(
                "stats_failed_item",
                count=failure.count,
                reason=failure.reason,
                last=format_datetime(failure.last, zone),
            )
            for failure in health.failures
        ]
    return "\n".join(lines) or None


async def stats_shown(
    message: Message,
    catalog: EventCatalog,
    admin_queries: AdminQueries,
    clock: Clock,
    settings: Settings,
) -> None:
    now = clock()
    events = list(catalog.events) + list(catalog.archived)
    if not events:
        await message.answer(t("no_events"))
        return
    blocks = []
    for event in events:
        stats = await admin_queries.event_stats(event, now)
        if event.is_open(now):
            days = (event.registration_deadline.date() - now.astimezone(event.timezone).date()).days
        else:
            days = -1
        blocks.append(
            t(
                "stats_event",
                title=event.title,
                when=format_datetime(event.starts_at, event.timezone),
                confirmed=stats.confirmed,
                withdrawn=stats.withdrawn,
                in_progress=stats.in_progress,
                today=stats.today,
                last_7_days=stats.last_7_days,
                unreachable=stats.unreachable,
                deadline=Html(deadline_line(event, days)),
            )
        )
    outbox = outbox_block(await admin_queries.outbox_health(limit=OUTBOX_LIMIT), settings.timezone)
    if outbox is not None:
        blocks.append(outbox)
    for text in pack_blocks(blocks):
        await message.answer(text)


def pack_blocks(blocks: list[str], separator: str = "\n\n") -> list[str]:
    """Blocks joined into as few messages as fit Telegram's limit."""
    messages: list[str] = []
    for block in blocks:
        length = message_length(messages[-1] + separator + block) if messages else 0
        if messages and length <= MAX_MESSAGE_LENGTH:
            messages[-1] += separator + block
        else:
            messages.append(block[:MAX_MESSAGE_LENGTH])
    return messages


async def registrations_found(
    message: Message,
    command: CommandObject,
    catalog: EventCatalog,
    admin_queries: AdminQueries,
) -> None:
    query = (command.args or "").strip()
    if len(query) < 2:
        await message.answer(t("find_usage"))
        return
    found, count = await admin_queries.find(query[:200], limit=FIND_LIMIT)
    if not found:
        await message.answer(t("find_none", query=query[:200]))
        return
    items = [t("find_header", count=count)]
    for number, registration in enumerate(found, start=1):
        event = catalog.get(registration.event_id)
        items.append(
            t(
                "find_item",
                number=number,
                full_name=registration.full_name,
                organization=registration.organization,
                phone=format_phone(registration.phone),
                email=registration.email,
                title=event.title if event else registration.event_id,
                status=t(f"status_{registration.status}"),
            )
        )
    if count > len(found):
        items.append(t("find_more", count=count - len(found)))
    for text in pack_blocks(items):
        await message.answer(text)


# --- /export -------------------------------------------------------------------------------

ALL_EVENTS = "*"
EXPORT_JOB = "export"


async def export_started(
    message: Message,
    bot: Bot,
    catalog: EventCatalog,
    settings: Settings,
    clock: Clock,
    background_jobs: BackgroundJobs,
) -> None:
    events = list(catalog.events) + list(catalog.archived)
    if len(events) <= 1:
        await start_export(bot, message.chat.id, events[0].id if events else None,
                           catalog, settings, clock, background_jobs)  # fmt: skip
        return
    keyboard = InlineKeyboardBuilder()
    for event in events:
        keyboard.button(
            text=event.title[:60],
            callback_data=AdminCallback(action=AdminAction.export_event, event_id=event.id),
        )
    keyboard.button(
        text=t("button_all_events"),
        callback_data=AdminCallback(action=AdminAction.export_event, event_id=ALL_EVENTS),
    )
    keyboard.adjust(1)
    await message.answer(t("choose_event_admin"), reply_markup=keyboard.as_markup())


async def export_chosen(
    callback: CallbackQuery,
    callback_data: AdminCallback,
    bot: Bot,
    catalog: EventCatalog,
    settings: Settings,
    clock: Clock,
    background_jobs: BackgroundJobs,
) -> None:
    await callback.answer()
    event_id = None if callback_data.event_id == ALL_EVENTS else callback_data.event_id
    await start_export(
        bot, callback.from_user.id, event_id, catalog, settings, clock, background_jobs
    )


async def start_export(
    bot: Bot,
    chat_id: int,
    event_id: str | None,
    catalog: EventCatalog,
    settings: Settings,
    clock: Clock,
    background_jobs: BackgroundJobs,
) -> None:
    """Answer "preparing…" and leave the files and their upload to a background job: an
    upload can take seconds, and the update must not wait for it."""
    if background_jobs.running(EXPORT_JOB, chat_id):
        await bot.send_message(chat_id, t("export_already_running"))
        return
    progress = await bot.send_message(chat_id, t("export_preparing"))
    today = clock().astimezone(settings.timezone).date()
    job = partial(
        send_export, bot, chat_id, progress, event_id, catalog, settings.database_path, today
    )
    background_jobs.start(EXPORT_JOB, chat_id, job)


async def send_export(
    bot: Bot,
    chat_id: int,
    progress: Message,
    event_id: str | None,
    catalog: EventCatalog,
    database_path: Path,
    today: date,
) -> None:
    """Build both files in a process of their own (their own read-only connection; WAL lets
    the bot keep writing meanwhile), send them, and turn "preparing…" into the result."""
    rows = 0
    try:
        with tempfile.TemporaryDirectory(prefix="export-") as folder:
            for fmt in FORMATS:
                name = export_filename(event_id, fmt, today)
                path = Path(folder) / name
                rows = await export_in_process(database_path, catalog, event_id, fmt, path)
                await bot.send_document(chat_id, FSInputFile(path, filename=name))
    except asyncio.CancelledError:
        await report_job(progress, t("export_interrupted"))
        raise
    except Exception as error:
        logger.error("Export for chat %d failed: %s", chat_id, type(error).__name__, exc_info=error)
        await report_job(progress, t("export_failed"))
        return
    logger.info("Export of %s (%d rows) sent to %d", event_id or "all sessions", rows, chat_id)
    await report_job(progress, t("export_done", rows=rows))


async def report_job(progress: Message, text: str) -> None:
    """Turn a job's "preparing…" message into its outcome; a job cancelled at shutdown
    gives it a moment only."""
    try:
        await asyncio.wait_for(progress.edit_text(text), REPORT_TIMEOUT)
    except (TelegramAPIError, TimeoutError) as error:
        logger.warning(
            "Could not report a job's outcome in chat %d: %s",
            progress.chat.id,
            type(error).__name__,
        )


# --- /broadcast ----------------------------------------------------------------------------


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
    builder = InlineKeyboardBuilder()
    builder.button(
        text=t("button_broadcast_send", count=count),
        callback_data=AdminCallback(action=AdminAction.broadcast_send, event_id=event_id),
    )
    builder.button(
        text=t("button_broadcast_cancel"),
        callback_data=AdminCallback(action=AdminAction.broadcast_cancel, event_id=event_id),
    )
    title = event.title if event else event_id
    await message.answer(t("broadcast_preview", count=count, title=title))
    markup = builder.as_markup()
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


# --- refusal -------------------------------------------------------------------------------


async def admin_refused(
    message: Message, bot: Bot, state: FSMContext, catalog: EventCatalog
) -> None:
    await message.answer(t("admin_only"))
    # A participant in the middle of the form gets their question back.
    await reask(bot, message.chat.id, state, catalog)


async def admin_button_refused(callback: CallbackQuery) -> None:
    await callback.answer(t("admin_only"), show_alert=True)


def create_router(admin_ids: Iterable[int]) -> Router:
    router = Router(name="admin")
    is_admin = Magic(F.from_user.id.in_(frozenset(admin_ids)))
    # Checked once at the router: a participant's update (nearly every update) skips all
    # the admin handlers in one filter call instead of one per handler. Others' admin
    # commands and buttons still come in, to be refused at the end.
    router.message.filter(
        Magic(F.chat.type == ChatType.PRIVATE), or_f(is_admin, Command(*ADMIN_COMMANDS))
    )
    router.callback_query.filter(
        Magic(F.message.chat.type == ChatType.PRIVATE), or_f(is_admin, AdminCallback.filter())
    )

    router.message.register(admin_started, Command("start"), is_admin)
    router.message.register(admin_help, Command("help"), is_admin)
    router.message.register(export_started, Command("export"), is_admin)
    router.callback_query.register(
        export_chosen, AdminCallback.filter(F.action == AdminAction.export_event), is_admin
    )
    router.message.register(stats_shown, Command("stats"), is_admin)
    router.message.register(registrations_found, Command("find"), is_admin)
    router.message.register(digest_now, Command("digest"), is_admin)
    router.message.register(broadcast_started, Command("broadcast"), is_admin)
    router.message.register(
        broadcast_cancelled_by_command, Command("cancel"), StateFilter(BroadcastForm)
    )
    router.message.register(broadcast_written, StateFilter(BroadcastForm.writing), is_admin)
    router.message.register(
        broadcast_awaiting_button, StateFilter(BroadcastForm.confirming), is_admin
    )
    router.callback_query.register(
        broadcast_event_chosen,
        AdminCallback.filter(F.action == AdminAction.broadcast_event),
        is_admin,
    )
    router.callback_query.register(
        broadcast_confirmed,
        StateFilter(BroadcastForm.confirming),
        AdminCallback.filter(F.action == AdminAction.broadcast_send),
        is_admin,
    )
    router.callback_query.register(
        broadcast_cancelled,
        StateFilter(BroadcastForm.confirming),
        AdminCallback.filter(F.action == AdminAction.broadcast_cancel),
        is_admin,
    )

    # Registered after the admin handlers: whoever reaches these is not an admin.
    router.message.register(admin_refused, Command(*ADMIN_COMMANDS))
    router.callback_query.register(admin_button_refused, AdminCallback.filter(), ~is_admin)
    return router
