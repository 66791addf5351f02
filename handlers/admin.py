"""Admin commands: /help, /digest, /stats, /find, /export (and the admin's own menu at /start).
Access is declared in handlers.get_routers: only ADMIN_IDS in private chats reach this router;
others' admin commands are refused in handlers/refusals.py. /broadcast is handlers/broadcast.py,
/erase and /audit handlers/erase.py. Each /find and export is recorded in the audit (who, how
many rows; storage/audit.py)."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from datetime import date
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

from aiogram import Bot, F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, FSInputFile, Message

from bot.domain.clock import Clock
from bot.domain.config import Settings
from bot.domain.events import Event, EventCatalog
from bot.domain.form import FormFields
from bot.domain.limits import pack_blocks
from bot.domain.sources import sources_line
from bot.domain.texts import Html, t, tn
from bot.domain.timefmt import format_datetime
from bot.domain.validation import format_phone
from handlers.jobs import BackgroundJobs
from handlers.keyboards import ALL_EVENTS, AdminAction, AdminCallback, events_keyboard
from handlers.menu import AdminMenus
from storage.audit import AuditEntry, AuditLog, admin_actor
from storage.digests import Digests
from storage.export import FORMATS, export_filename
from storage.export.process import export_in_process
from storage.stats import AdminQueries, OutboxHealth

logger = logging.getLogger(__name__)

FIND_LIMIT = 10
OUTBOX_LIMIT = 10  # parked chats and failure reasons listed in /stats
REPORT_TIMEOUT = 5.0


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
    return tn("stats_deadline_days", now_local_days, days=now_local_days)


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
        text = t(
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
        if stats.capacity is not None:
            left = max(0, stats.capacity - stats.confirmed - stats.waiting)
            seats = t("stats_seats", capacity=stats.capacity, confirmed=stats.confirmed, left=left)
            text += "\n" + seats
        if stats.capacity is not None or stats.waiting:
            text += "\n" + t("stats_waitlist", waiting=stats.waiting, offered=stats.offered)
        if (sources := sources_line(stats.sources)) is not None:
            text += "\n" + sources
        blocks.append(text)
    outbox = outbox_block(await admin_queries.outbox_health(limit=OUTBOX_LIMIT), settings.timezone)
    if outbox is not None:
        blocks.append(outbox)
    for text in pack_blocks(blocks):
        await message.answer(text)


async def registrations_found(
    message: Message,
    command: CommandObject,
    catalog: EventCatalog,
    admin_queries: AdminQueries,
    audit: AuditLog,
    clock: Clock,
) -> None:
    query = (command.args or "").strip()
    if len(query) < 2:
        await message.answer(t("find_usage"))
        return
    assert message.from_user is not None
    found, count = await admin_queries.find(query[:200], limit=FIND_LIMIT)
    # Recorded before it is shown; how many registrations the admin sees, never the query
    # (a name or a phone is personal data itself).
    await audit.record(
        AuditEntry(clock(), "find", admin_actor(message.from_user.id), row_count=len(found))
    )
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

EXPORT_JOB = "export"


async def export_started(
    message: Message,
    bot: Bot,
    catalog: EventCatalog,
    form: FormFields,
    settings: Settings,
    clock: Clock,
    background_jobs: BackgroundJobs,
    audit: AuditLog,
) -> None:
    events = list(catalog.events) + list(catalog.archived)
    if len(events) <= 1:
        await start_export(bot, message.chat.id, events[0].id if events else None,
                           catalog, form, settings, clock, background_jobs, audit)  # fmt: skip
        return
    keyboard = events_keyboard(events, AdminAction.export_event, all_events=True)
    await message.answer(t("choose_event_admin"), reply_markup=keyboard)


async def export_chosen(
    callback: CallbackQuery,
    callback_data: AdminCallback,
    bot: Bot,
    catalog: EventCatalog,
    form: FormFields,
    settings: Settings,
    clock: Clock,
    background_jobs: BackgroundJobs,
    audit: AuditLog,
) -> None:
    await callback.answer()
    event_id = None if callback_data.event_id == ALL_EVENTS else callback_data.event_id
    await start_export(
        bot, callback.from_user.id, event_id, catalog, form, settings, clock, background_jobs,
        audit,
    )  # fmt: skip


async def start_export(
    bot: Bot,
    chat_id: int,
    event_id: str | None,
    catalog: EventCatalog,
    form: FormFields,
    settings: Settings,
    clock: Clock,
    background_jobs: BackgroundJobs,
    audit: AuditLog,
) -> None:
    """Answer "preparing…" and leave the files and their upload to a background job: an
    upload can take seconds, and the update must not wait for it."""
    if background_jobs.running(EXPORT_JOB, chat_id):
        await bot.send_message(chat_id, t("export_already_running"))
        return
    progress = await bot.send_message(chat_id, t("export_preparing"))
    today = clock().astimezone(settings.timezone).date()
    job = partial(
        send_export, bot, chat_id, progress, event_id, catalog,
        settings.database_dsn or settings.database_path, today,
        audit, clock, settings.organizer_language, form.in_answers,
    )  # fmt: skip
    background_jobs.start(EXPORT_JOB, chat_id, job)


async def send_export(
    bot: Bot,
    chat_id: int,
    progress: Message,
    event_id: str | None,
    catalog: EventCatalog,
    database_path: Path | str,  # or DATABASE_URL
    today: date,
    audit: AuditLog,
    clock: Clock,
    language: str,
    standard: tuple[str, ...],
) -> None:
    """Build both files in a process of their own (their own read-only connection; WAL lets
    the bot keep writing meanwhile), send them, and turn "preparing…" into the result. The
    audit records the export once a file has reached the admin (a private chat's id is
    its user's)."""
    rows = 0
    recorded = False
    try:
        with tempfile.TemporaryDirectory(prefix="export-") as folder:
            for fmt in FORMATS:
                name = export_filename(event_id, fmt, today)
                path = Path(folder) / name
                rows = await export_in_process(
                    database_path, catalog, event_id, fmt, path, language=language,
                    standard=standard,
                )  # fmt: skip
                await bot.send_document(chat_id, FSInputFile(path, filename=name))
                if not recorded:
                    recorded = True
                    await audit.record(
                        AuditEntry(clock(), "export", admin_actor(chat_id),
                                   event_id=event_id, row_count=rows)
                    )  # fmt: skip
    except asyncio.CancelledError:
        await report_job(progress, t("export_interrupted"))
        raise
    except Exception as error:
        logger.error("Export for chat %d failed: %s", chat_id, type(error).__name__, exc_info=error)
        await report_job(progress, t("export_failed"))
        return
    logger.info("Export of %s (%d rows) sent to %d", event_id or "all sessions", rows, chat_id)
    await report_job(progress, tn("export_done", rows, rows=rows))


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


def create_router() -> Router:
    router = Router(name="admin_commands")
    # /start first: the admin's menu, then on to the participant flow (SkipHandler).
    router.message.register(admin_started, Command("start"))
    router.message.register(admin_help, Command("help"))
    router.message.register(export_started, Command("export"))
    router.callback_query.register(
        export_chosen, AdminCallback.filter(F.action == AdminAction.export_event)
    )
    router.message.register(stats_shown, Command("stats"))
    router.message.register(registrations_found, Command("find"))
    router.message.register(digest_now, Command("digest"))
    return router
