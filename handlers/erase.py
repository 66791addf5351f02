"""/erase: an admin erases a participant's personal data on a request that came by other
channels (a letter, a call; 152-FZ art. 21 §5). /audit: the record of erasures and of reads
of personal data (exports, searches, announcements).

/erase <phone | e-mail | number> ─▶ nothing held ─▶ "nothing to erase"
                                 └▶ the matches, "erase?" ─┬─ yes ─▶ erased, one transaction
                                                           └─ no ──▶ "nothing erased"

Access is declared in handlers.get_routers (admins in private chats only); others' /erase,
/audit and erase buttons are refused in handlers/refusals.py.
"""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message

from bot.domain.clock import Clock
from bot.domain.config import Settings
from bot.domain.events import EventCatalog
from bot.domain.limits import MAX_MESSAGE_LENGTH, message_length
from bot.domain.texts import t
from bot.domain.timefmt import format_datetime
from bot.domain.validation import ValidationError, parse_person_key
from handlers.keyboards import EraseAction, EraseCallback, erase_callbacks, erase_keyboard
from handlers.replies import replace_answered
from storage.audit import AuditEntry, AuditLog, Reason, admin_actor
from storage.erasure import PersonalData
from storage.stats import AdminQueries

logger = logging.getLogger(__name__)

AUDIT_LIMIT = 20


# --- /erase --------------------------------------------------------------------------------


async def erase_requested(
    message: Message, command: CommandObject, catalog: EventCatalog, admin_queries: AdminQueries
) -> None:
    query = (command.args or "").strip()
    if not query:
        await message.answer(t("erase_usage"))
        return
    try:
        key = parse_person_key(query)
    except ValidationError as error:
        await message.answer(t(f"reason_{error.reason}") + "\n" + t("erase_usage"))
        return
    found = await admin_queries.holding(key)
    if not found:
        await message.answer(t("erase_none", query=query[:200]))
        return
    items = []
    for registration in found:
        event = catalog.get(registration.event_id)
        items.append(
            t(
                "erase_item",
                id=registration.id,
                title=event.title if event else registration.event_id,
                full_name=registration.full_name,
                status=t(f"status_{registration.status}"),
            )
        )
    buttons = erase_callbacks(registration.id for registration in found)
    closing = (
        t("erase_confirm", count=len(found))
        if buttons is not None
        else t("erase_too_many", count=len(found), example=found[0].id)
    )
    text = fit_lines(t("erase_header", count=len(found)), items, closing, more_key="erase_more")
    await message.answer(text, reply_markup=erase_keyboard(*buttons) if buttons else None)


async def erase_confirmed(
    callback: CallbackQuery,
    callback_data: EraseCallback,
    bot: Bot,
    personal_data: PersonalData,
    clock: Clock,
) -> None:
    await callback.answer()
    erased = await personal_data.erase(
        callback_data.registration_ids,
        reason=Reason.admin,
        actor=admin_actor(callback.from_user.id),
        now=clock(),
    )
    if erased:
        numbers = [entry.registration_id for entry in erased]
        logger.info("Admin %d erased the personal data of registrations %s",
                    callback.from_user.id, numbers)  # fmt: skip
        text = t("erase_done", count=len(numbers), numbers=", ".join(map(str, numbers)))
    else:
        text = t("erase_done_nothing")
    # The list of names goes from the admin's chat too: the message becomes the outcome.
    await replace_answered(callback, bot, text)


async def erase_declined(callback: CallbackQuery, bot: Bot) -> None:
    await callback.answer()
    await replace_answered(callback, bot, t("erase_kept"))


def fit_lines(header: str, lines: list[str], closing: str, *, more_key: str) -> str:
    """Header, as many lines as fit one message, "…and N more", the closing text."""
    kept: list[str] = []
    for number, line in enumerate(lines):
        rest = len(lines) - number - 1
        tail = ([t(more_key, count=rest)] if rest else []) + ([closing] if closing else [])
        candidate = "\n".join([header, *kept, line, *tail])
        if message_length(candidate) > MAX_MESSAGE_LENGTH:
            tail = [t(more_key, count=len(lines) - number)] + ([closing] if closing else [])
            return "\n".join([header, *kept, *tail])
        kept.append(line)
    return "\n".join([header, *kept] + ([closing] if closing else []))


# --- /audit --------------------------------------------------------------------------------


def _label(prefix: str, value: str) -> str:
    """The catalogue's name for a recorded value; the value itself if it has none (a
    reason or actor recorded by a later version)."""
    key = f"{prefix}_{value}"
    try:
        return t(key)
    except KeyError:
        return t("audit_value", value=value)


def audit_line(entry: AuditEntry, zone: ZoneInfo) -> str:
    parts = [format_datetime(entry.at, zone), _label("audit_action", entry.action)]
    if entry.reason:
        parts.append(_label("audit_reason", entry.reason))
    admin = entry.actor.removeprefix("admin ")
    if admin != entry.actor and admin.isdigit():
        parts.append(t("audit_actor_admin", id=admin))
    else:
        parts.append(_label("audit_actor", entry.actor))
    if entry.registration_id is not None:
        parts.append(t("audit_registration", id=entry.registration_id))
    if entry.event_id:
        parts.append(t("audit_value", value=entry.event_id))
    elif entry.action in ("export", "broadcast"):
        parts.append(t("audit_all_events"))
    if entry.fields:
        names = ", ".join(_label("audit_field", field) for field in entry.fields)
        parts.append(t("audit_fields", fields=names))
    if entry.row_count is not None:
        parts.append(t("audit_rows", count=entry.row_count))
    return t("audit_separator").join(parts)


async def audit_shown(message: Message, audit: AuditLog, settings: Settings) -> None:
    entries = await audit.recent(AUDIT_LIMIT)
    if not entries:
        await message.answer(t("audit_empty"))
        return
    lines = [audit_line(entry, settings.timezone) for entry in entries]
    header = t("audit_header", count=len(entries))
    await message.answer(fit_lines(header, lines, "", more_key="audit_more"))


def create_router() -> Router:
    router = Router(name="erase")
    router.message.register(erase_requested, Command("erase"))
    router.message.register(audit_shown, Command("audit"))
    router.callback_query.register(
        erase_confirmed, EraseCallback.filter(F.action == EraseAction.yes)
    )
    router.callback_query.register(erase_declined, EraseCallback.filter(F.action == EraseAction.no))
    return router
