"""Wiring: the Bot, the Dispatcher (production and tests build it here), and the run loop."""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import logging
import os
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import orjson
from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.base import BaseSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.dispatcher.event.bases import MiddlewareEventType, MiddlewareType, NextMiddlewareType
from aiogram.dispatcher.event.handler import CallbackType
from aiogram.dispatcher.middlewares.manager import MiddlewareManager
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramUnauthorizedError
from aiogram.fsm.storage.base import DefaultKeyBuilder
from aiogram.methods import (
    AnswerCallbackQuery,
    DeleteMessage,
    EditMessageReplyMarkup,
    EditMessageText,
    GetMe,
    GetUpdates,
    Response,
    SendDocument,
    SendMessage,
    SetMyCommands,
)
from aiogram.types import TelegramObject

from bot import bot_context
from bot.broadcast_worker import BroadcastReporter
from bot.digest_worker import DigestScheduler
from bot.domain.clock import Clock, utc_now
from bot.domain.config import Settings
from bot.domain.events import EventCatalog, load_events
from bot.domain.form import FORM, FormFields
from bot.domain.texts import load_catalogues
from bot.flood import FloodGate, FloodLimits
from bot.leader import Leader
from bot.middlewares import ConversationMiddleware
from bot.polling import poll
from bot.reminder_worker import ReminderScheduler
from bot.retention_worker import RetentionJob
from bot.retry import ButtonAnswersBestEffort, RetryRequests
from bot.sender import Limits, Sender
from bot.session import BotSession
from bot.updates import HANDLING_LIMIT, PRUNE_EVERY, Intake, SharedIntake
from bot.waitlist_worker import run_waitlists
from bot.webhook import WebhookSetupError, leave_webhook, serve_webhook
from handlers import Provide, get_routers, on_error, repeat_question
from handlers.jobs import BackgroundJobs
from handlers.keyboards import offer_markup_json
from handlers.menu import AdminMenus
from handlers.states import form_states
from storage.audit import AuditLog
from storage.broadcasts import Broadcasts
from storage.cards import CardPublisher
from storage.database import Database, open_database
from storage.digests import Digests
from storage.erasure import PersonalData
from storage.events import EventsRepository
from storage.fsm import SQLiteStorage
from storage.health import Health
from storage.inbox import Inbox
from storage.languages import Languages
from storage.lease import DatabaseInUse, hold_lease
from storage.outbox import Outbox
from storage.registrations import Registrations
from storage.reminders import Reminders
from storage.seats import Seats
from storage.stats import AdminQueries
from storage.updates import HandledUpdates
from storage.webhook import WebhookRecord

if TYPE_CHECKING:  # asyncpg is imported on PostgreSQL only
    from storage.replicas import ChatTurns, Leadership

logger = logging.getLogger(__name__)


class StartupError(Exception):
    """A start-up failure to print as one line."""


# aiogram parses every answer as pydantic's `Response[T]`, a generic class pydantic caches
# only weakly: once garbage-collected it is built again (costly each time, several times a
# minute under load). Holding the ones the bot uses keeps them built.
_RESPONSE_TYPES: list[object] = []


def _pin_response_types() -> None:
    if not _RESPONSE_TYPES:
        methods = (
            AnswerCallbackQuery, DeleteMessage, EditMessageReplyMarkup, EditMessageText, GetMe,
            GetUpdates, SendDocument, SendMessage, SetMyCommands,
        )  # fmt: skip
        _RESPONSE_TYPES.extend(
            Response[method.__returning__]  # type: ignore[name-defined]
            for method in methods
        )


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def create_bot(settings: Settings, session: BaseSession | None = None) -> Bot:
    _pin_response_types()
    bot_context.install()
    if session is None:
        # 60 s (aiogram's default) is long for a person waiting for a reply; the poller
        # sets its own longer timeout for long polling.
        session = BotSession(api=TelegramAPIServer.from_base(settings.telegram_api_url), timeout=20)
    # Every Bot API answer is parsed from JSON (getUpdates' batches are the biggest) and every
    # keyboard sent is written as JSON: orjson does both several times faster than the
    # standard library, and its objects are the same.
    session.json_loads = orjson.loads
    session.json_dumps = _json_text
    # Outermost first: a button's answer is given up only after RetryRequests' retries.
    session.middleware(ButtonAnswersBestEffort())
    session.middleware(RetryRequests())
    return Bot(
        settings.bot_token.get_secret_value(),
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True),
    )


class AppDispatcher(Dispatcher):
    """The Dispatcher, with app-scoped objects kept out of its workflow data.

    aiogram copies its workflow data into every update's keyword arguments, and copies those
    again at each router level and filter call on the way (dozens of times an update), so
    each object there costs every update: 9 fewer were -8% of the instructions per update,
    the last 6 -4.5% (bench/ANALYSIS.md). So none of ours is workflow data:
    - `handler_data`, what the participants' handlers take, is given to whichever handler
      is about to be called (an inner middleware on each event's observer of the
      dispatcher, which aiogram runs for the handlers of every router, after the filters);
    - `services`, the rest, to the routers whose handlers take them (handlers.get_routers).
    Both go to the startup and shutdown hooks; `dispatcher[name]` finds any of them.
    """

    def __init__(
        self, *, services: dict[str, Any], handler_data: dict[str, Any], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.services = services
        self.handler_data = handler_data
        for name, observer in self.observers.items():
            if name not in ("update", "error"):  # the update's own routing; on_error
                observer.middleware(Provide(handler_data))

    def _app_scoped(self) -> dict[str, Any]:
        # Made at each call: services are added after the dispatcher (a replica's leadership).
        return {**self.handler_data, **self.services}

    def __getitem__(self, item: str) -> Any:
        app_scoped = self._app_scoped()
        return app_scoped[item] if item in app_scoped else super().__getitem__(item)

    def get(self, key: str, /, default: Any | None = None) -> Any | None:
        app_scoped = self._app_scoped()
        return app_scoped[key] if key in app_scoped else super().get(key, default)

    async def emit_startup(self, *args: Any, **kwargs: Any) -> None:
        await super().emit_startup(*args, **{**self._app_scoped(), **kwargs})

    async def emit_shutdown(self, *args: Any, **kwargs: Any) -> None:
        await super().emit_shutdown(*args, **{**self._app_scoped(), **kwargs})


async def set_commands(bot: Bot, admin_menus: AdminMenus) -> None:
    await admin_menus.set_all(bot)


async def start_workers(
    bot: Bot,
    dispatcher: AppDispatcher,
    outbox: Outbox,
    digest: DigestScheduler,
    reminder_scheduler: ReminderScheduler,
    broadcasts: Broadcasts,
    retention: RetentionJob,
    catalog: EventCatalog,
    clock: Clock,
    limits: Limits,
    seats: Seats,
    languages: Languages,
) -> None:
    sender = Sender(bot, outbox, clock, limits)
    dispatcher.services["sender"] = sender
    await sender.start()
    reporter = BroadcastReporter(bot, broadcasts, catalog, clock, languages=languages)
    dispatcher.services["worker_tasks"] = [
        asyncio.create_task(digest.run(), name="digest"),
        asyncio.create_task(reporter.run(), name="broadcast-progress"),
        asyncio.create_task(run_waitlists(seats, clock), name="waitlists"),
        asyncio.create_task(reminder_scheduler.run(), name="reminders"),
        asyncio.create_task(retention.run(), name="retention"),
    ]


async def lead_workers(dispatcher: AppDispatcher, **data: Any) -> None:
    """Replicas: the workers run while this replica leads (bot/leader.py)."""
    leadership: Leadership = dispatcher["leadership"]

    data = {**data, "dispatcher": dispatcher}

    async def start() -> None:
        await start_workers(
            **{name: data[name] for name in inspect.signature(start_workers).parameters}
        )

    leader = Leader(leadership, start=start, stop=lambda: stop_workers(dispatcher))
    dispatcher.services["leader"] = leader
    leader.begin()


async def stop_leading(dispatcher: AppDispatcher) -> None:
    leader: Leader | None = dispatcher.get("leader")
    if leader is not None:
        await leader.end()
    await stop_workers(dispatcher, jobs_only=True)


async def stop_workers(dispatcher: AppDispatcher, *, jobs_only: bool = False) -> None:
    background_jobs: BackgroundJobs = dispatcher["background_jobs"]
    await background_jobs.stop()
    if jobs_only:
        return
    tasks: list[asyncio.Task[None]] = dispatcher.services.pop("worker_tasks", None) or []
    for task in tasks:
        task.cancel()
    for task in tasks:
        with suppress(asyncio.CancelledError):
            await task
    sender: Sender | None = dispatcher.services.pop("sender", None)
    if sender is not None:
        await sender.stop()


def create_dispatcher(
    *,
    settings: Settings,
    db: Database,
    catalog: EventCatalog,
    clock: Clock = utc_now,
    limits: Limits | None = None,
    form: FormFields = FORM,
    leadership: Leadership | None = None,
) -> AppDispatcher:
    """The one Dispatcher: app-scoped objects reach handlers as typed keyword arguments;
    background workers start and stop with it (startup and shutdown hooks). `form`: the
    standard questions (STANDARD_FIELDS unless given)."""
    for event in catalog:
        for question in event.questions:
            if question.id in form:
                raise ValueError(
                    f"event {event.id!r}: question {question.id!r}: a standard question of "
                    "the form has this id"
                )
    catalog = replace(catalog, retention_days=settings.retention_days)
    load_catalogues()
    outbox = Outbox(db)
    cards = CardPublisher(
        outbox, settings.organizer_chat_ids, catalog, settings.organizer_language, form=form
    )
    seats = Seats(db, outbox, catalog, cards, offer_markup=offer_markup_json)
    reminders = Reminders(db, outbox)
    languages = Languages(db, clock=clock)
    storage = SQLiteStorage(
        db,
        key_builder=DefaultKeyBuilder(
            with_bot_id=True, with_business_connection_id=True, with_destiny=True
        ),
        clock=clock,
    )
    personal_data = PersonalData(db, cards, seats)
    services: dict[str, Any] = {
        "settings": settings,
        "outbox": outbox,
        "broadcasts": Broadcasts(db, outbox),
        "admin_queries": AdminQueries(db),
        "admin_menus": AdminMenus(settings.admin_ids),
        "background_jobs": BackgroundJobs(),
        "digests": Digests(db),
        "digest": DigestScheduler(
            db=db,
            outbox=outbox,
            catalog=catalog,
            chat_ids=settings.organizer_chat_ids,
            at=settings.digest_time,
            zone=settings.timezone,
            clock=clock,
            language=settings.organizer_language,
        ),
        "limits": limits or Limits(),
        # Taken by /me, /forget and /language (and the admins') alone: given to their routers
        # only (handlers.get_routers), not copied along with every update.
        "personal_data": personal_data,
        "languages": languages,
        "audit": AuditLog(db),
        "reminder_scheduler": ReminderScheduler(reminders=reminders, catalog=catalog, clock=clock),
        "retention": RetentionJob(
            db=db,
            personal_data=personal_data,
            retention_days=settings.retention_days,
            zone=settings.timezone,
            # The registration form's states, /me's change of a field included (it holds a
            # copy of the registration); an admin's broadcast being written is not a form.
            form_states=form_states(form),
            clock=clock,
        ),
    }
    # What the participants' handlers take: given to the handler about to be called, after
    # the filters, rather than carried as workflow data through every router level and
    # filter call (6 keys fewer in each copy: -4.5% of the instructions per update).
    handler_data: dict[str, Any] = {
        "catalog": catalog,
        "form": form,
        "registrations": Registrations(db, cards),
        "seats": seats,
        "reminders": reminders,
        "clock": clock,
    }
    dispatcher = AppDispatcher(
        storage=storage,
        # Registered below, inside the update's scope (ConversationMiddleware), which also
        # handles one update of a conversation at a time (its own locks).
        disable_fsm=True,
        services=services,
        handler_data=handler_data,
    )
    # One middleware: the update's scope with aiogram's FSM (one person's quick taps are
    # handled one after another, never interleaved; the conversation's row read once), the
    # sender's language, then the guard against updates handled before.
    dispatcher.update.outer_middleware(
        ConversationMiddleware(
            storage,
            strategy=dispatcher.fsm.strategy,
            languages=languages,
            handled=HandledUpdates(db),
            clock=clock,
            on_repeat=functools.partial(repeat_question, catalog=catalog, form=form),
        )
    )
    dispatcher.include_routers(*get_routers(settings.admin_ids, services, form))
    dispatcher.errors.register(on_error)
    dispatcher.startup.register(set_commands)
    if leadership is None:
        dispatcher.startup.register(start_workers)
        dispatcher.shutdown.register(stop_workers)
    else:
        services["leadership"] = leadership
        dispatcher.startup.register(lead_workers)
        dispatcher.shutdown.register(stop_leading)
    _lean_middleware_managers(dispatcher)
    return dispatcher


class LeanMiddlewareManager(MiddlewareManager):
    """aiogram's middleware manager without `functools.wraps` on the function it wraps.

    aiogram wraps the next step in its middlewares at every router level an update passes
    and for every handler it calls (about nine times an update), and `functools.wraps`
    copies five attributes each time that nothing reads."""

    @staticmethod
    def wrap_middlewares(
        middlewares: Sequence[MiddlewareType[MiddlewareEventType]], handler: CallbackType
    ) -> NextMiddlewareType[MiddlewareEventType]:
        def handler_wrapper(event: TelegramObject, kwargs: dict[str, Any]) -> Any:
            return handler(event, **kwargs)

        middleware: NextMiddlewareType[MiddlewareEventType] = handler_wrapper
        for outer in reversed(middlewares):
            middleware = functools.partial(outer, middleware)  # type: ignore[arg-type]  # as in aiogram
        return middleware


def _lean_middleware_managers(dispatcher: Dispatcher) -> None:
    for router in dispatcher.chain_tail:
        for observer in router.observers.values():
            for manager in (observer.middleware, observer.outer_middleware):
                if type(manager) is MiddlewareManager:
                    manager.__class__ = LeanMiddlewareManager


def create_intake(
    dispatcher: Dispatcher,
    bot: Bot,
    *,
    db: Database,
    settings: Settings,
    clock: Clock = utc_now,
    flood: FloodLimits | None = None,
    limit: float = HANDLING_LIMIT,
    prune_every: float = PRUNE_EVERY,
    turns: ChatTurns | None = None,
) -> Intake:
    """Where updates go from the poller or the webhook: flood control, the inbox, each chat's
    worker (and the hourly pruning of what is kept for a while). With `turns`, the intake of
    one of several replicas sharing the inbox (bot/updates.py: SharedIntake)."""
    kwargs: dict[str, Any] = {
        "inbox": Inbox(db),
        "handled": HandledUpdates(db),
        "gate": FloodGate(flood or FloodLimits(), exempt=settings.admin_ids),
        "clock": clock,
        "limit": limit,
        "prune_every": prune_every,
        "audit": AuditLog(db),
    }
    if turns is not None:
        return SharedIntake(dispatcher, bot, turns=turns, **kwargs)
    return Intake(dispatcher, bot, **kwargs)


@dataclass(frozen=True)
class Opened:
    """What the dispatcher needs from start-up."""

    db: Database
    catalog: EventCatalog


@asynccontextmanager
async def open_app(
    settings: Settings, *, catalog: EventCatalog | None = None, clock: Clock = utc_now
) -> AsyncIterator[Opened]:
    """The one start-up path (run, tests, the fuzz suite and the benchmarks): open and migrate
    the database, load the events file (unless given) and mirror it, keeping sessions gone
    from the file that have registrations as archived; make missing CSV texts."""
    if catalog is None:
        catalog = load_events(settings.events_file, default_zone=settings.timezone)
    # SQLITE_ON_LOOP=0: every statement on aiosqlite's thread, as before (for A/B benchmarks).
    on_loop = os.environ.get("SQLITE_ON_LOOP", "1") != "0"
    async with open_database(
        settings.database_path, url=settings.database_dsn, on_loop=on_loop
    ) as db:
        archived = await EventsRepository(db).sync(catalog, now=clock())
        for event, count in archived:
            logger.warning(
                "Event %s is no longer in %s but has %d registrations: kept, closed to new ones",
                event.id,
                settings.events_file,
                count,
            )
        catalog = replace(catalog, archived=tuple(event for event, _ in archived))
        for change in await Reminders(db, Outbox(db)).sync_versions(catalog, now=clock()):
            logger.info(
                "Event %s changed (%s): its registrants are told, calendar sequence %d",
                change.event.id,
                ", ".join(change.changed()),
                change.sequence,
            )
        if filled := await Registrations(db).fill_csv_cells():
            logger.info("Stored the CSV text of %d registrations for exports", filled)
        yield Opened(db, catalog)


# Allocations between two collections of the youngest generation (CPython's default: 700).
# An update makes thousands of short-lived objects (aiogram's models of the update and of each
# answer, their dicts), nearly all freed by reference counting before a collection could find
# them; the collector is only for cycles. 700 ran it several times an update, each pass over
# the young objects: 10,000 saves 2% of the instructions per update (bench_instructions,
# 800 updates), with no change in peak memory that bench_throughput can tell.
YOUNG_GENERATION_THRESHOLD = 10_000


def settle_heap() -> None:
    """Everything built so far (the modules, aiogram's and pydantic's types and caches, the
    phone metadata, the catalogues) lives as long as the process: out of the collector's
    sight, its full collections stay short. Once the dispatcher is built, before updates."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, oldest)


async def run(settings: Settings, catalog: EventCatalog) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if settings.database_dsn is not None:
        # PostgreSQL: any number of replicas share the database.
        await _run(settings, catalog, stop)
        logger.info("Stopped cleanly")
        return
    # One process per SQLite file, for the life of the process (storage/lease.py).
    try:
        with hold_lease(settings.database_path):
            await _run(settings, catalog, stop)
    except DatabaseInUse as error:
        raise StartupError(str(error)) from None
    logger.info("Stopped cleanly")


async def _run(settings: Settings, catalog: EventCatalog, stop: asyncio.Event) -> None:
    async with open_app(settings, catalog=catalog) as opened:
        db, catalog = opened.db, opened.catalog
        bot = create_bot(settings)
        turns: ChatTurns | None = None
        try:
            try:
                me = await bot.me()
            except TelegramUnauthorizedError:
                raise StartupError(
                    "BOT_TOKEN was rejected by Telegram (401 Unauthorized): check the token "
                    "from @BotFather in .env (see .env.example)"
                ) from None
            logger.info("Bot @%s (id %d) starts in %s mode", me.username, me.id, settings.mode)
            # PostgreSQL: any number of replicas; each chat's turn and the sender's leadership
            # are advisory locks (storage/replicas.py).
            leadership: Leadership | None = None
            if db.dialect == "postgres":
                from storage.postgres import PostgresDatabase
                from storage.replicas import ChatTurns as Turns
                from storage.replicas import Leadership as Lead

                assert isinstance(db, PostgresDatabase)
                leadership, turns = Lead(db.session), Turns(db.session)
            dispatcher = create_dispatcher(
                settings=settings, db=db, catalog=catalog, leadership=leadership
            )
            settle_heap()
            intake = create_intake(dispatcher, bot, db=db, settings=settings, turns=turns)
            record = WebhookRecord(db)
            if settings.mode == "webhook":
                try:
                    await serve_webhook(
                        dispatcher,
                        bot,
                        intake,
                        settings=settings,
                        health=Health(db),
                        record=record,
                        stop=stop,
                    )
                except WebhookSetupError as error:
                    raise StartupError(str(error)) from None
            else:
                await leave_webhook(bot, record)
                await poll(dispatcher, bot, intake, stop=stop)
        finally:
            if turns is not None:
                await turns.close()
            await bot.session.close()
