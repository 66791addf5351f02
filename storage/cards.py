"""Organiser cards: one per registration change, queued in the change's own transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bot.domain.events import Event, EventCatalog
from bot.domain.form import FORM, FormFields
from bot.domain.limits import MAX_MESSAGE_LENGTH, message_length, split_lines
from bot.domain.render import answers, shown_value
from bot.domain.texts import DEFAULT_LOCALE, Html, t, use_locale
from bot.domain.timefmt import format_datetime
from storage.database import Connection
from storage.outbox import Outbox
from storage.registrations import (
    CARD_ID,
    CARD_PLACE,
    CreationCards,
    Registration,
    RegistrationChange,
)


def _event_line(event: Event | None, event_id: str) -> str:
    if event is None:
        return t("card_event", title=event_id, when="—")
    return t("card_event", title=event.title, when=format_datetime(event.starts_at, event.timezone))


def _new_card_parts(
    registration: Registration, catalog: EventCatalog, now: datetime, form: FormFields
) -> dict[str, str]:
    """What a new registration's card says but its number and place in line."""
    event = catalog.get(registration.event_id)
    username = f" @{registration.username}" if registration.username else ""
    return {
        "event": Html(_event_line(event, registration.event_id)),
        "answers": answers(
            form.values(registration, registration.answer_map()),
            event.questions if event else (),
            registration.answer_map(),
        ),
        "telegram": Html(
            t(
                "card_telegram",
                user_id=registration.user_id,
                name=registration.telegram_name,
                username=username,
            )
        ),
        "at": format_datetime(now, event.timezone if event else None),
    }


def render_card(
    change: RegistrationChange, catalog: EventCatalog, now: datetime, form: FormFields = FORM
) -> str:
    registration = change.registration
    if change.kind in ("created", "waiting"):
        assert registration is not None
        return t(
            f"card_{change.kind}",
            id=registration.id,
            place=registration.place or "—",
            **_new_card_parts(registration, catalog, now, form),
        )
    event = catalog.get(change.event_id)
    zone = event.timezone if event else None
    event_line = _event_line(event, change.event_id)
    at = format_datetime(now, zone)
    if change.kind == "offered":
        assert registration is not None and registration.offer_expires_at is not None
        return t(
            "card_offered",
            id=registration.id,
            event=Html(event_line),
            full_name=registration.full_name,
            until=format_datetime(registration.offer_expires_at, zone),
            at=at,
        )
    if change.kind == "promoted":
        assert registration is not None
        return t(
            "card_promoted",
            id=registration.id,
            event=Html(event_line),
            full_name=registration.full_name,
            at=at,
        )
    if change.kind == "changed":
        assert registration is not None
        assert change.before is not None and change.field is not None
        if change.field in form:
            name = t(f"field_{change.field}")
            old = form.values(change.before, change.before.answer_map())[change.field]
            new = form.values(registration, registration.answer_map())[change.field]
            old, new = shown_value(change.field, old), shown_value(change.field, new)
        else:  # an answer to one of the event's own questions, named by its Russian text
            question = next(
                (q for q in (event.questions if event else ()) if q.id == change.field), None
            )
            name = question.text if question else change.field
            skipped = t("answer_skipped")
            old = change.before.answer_map().get(change.field) or skipped
            new = registration.answer_map().get(change.field) or skipped
        return t(
            "card_changed",
            id=registration.id,
            event=Html(event_line),
            full_name=registration.full_name,
            field=name,
            old=old,
            new=new,
            at=at,
        )
    # The person's data is gone: the session and the number only (the organisers have the
    # earlier card with the name).
    return t(f"card_{change.kind}", id=change.id, event=Html(event_line), at=at)


class CardPublisher:
    """The registrations' change listener: a card for every organiser chat, in the
    organisers' language whoever's update made the change."""

    def __init__(
        self,
        outbox: Outbox,
        chat_ids: Sequence[int],
        catalog: EventCatalog,
        language: str = DEFAULT_LOCALE,
        *,
        form: FormFields = FORM,
    ) -> None:
        self._outbox = outbox
        self._chat_ids = tuple(chat_ids)
        self._catalog = catalog
        self._language = language
        self._form = form

    def creation_cards(self, registration: Registration, now: datetime) -> CreationCards | None:
        """Both cards a creation may post, its number and place left for the database to put
        in (storage/registrations.py: CreationCards); None for one too long for a message
        (split below, by the row's own length)."""
        if not self._chat_ids:
            return CreationCards((), "", "", self._outbox.added.set)
        number = Html(CARD_ID)
        with use_locale(self._language):
            parts = _new_card_parts(registration, self._catalog, now, self._form)
            # A seat has no place in line: "—", as render_card shows it.
            confirmed = t("card_created", id=number, place="—", **parts)
            waiting = t("card_waiting", id=number, place=Html(CARD_PLACE), **parts)
        for card in (confirmed, waiting):
            # Each mark as long as a number can be (a BIGINT's 19 digits, and one more).
            longest = message_length(card) + 20 * (card.count(CARD_ID) + card.count(CARD_PLACE))
            if longest > MAX_MESSAGE_LENGTH:
                return None
        return CreationCards(self._chat_ids, confirmed, waiting, self._outbox.added.set)

    async def __call__(
        self, connection: Connection, change: RegistrationChange, now: datetime
    ) -> None:
        if not self._chat_ids:
            return
        with use_locale(self._language):
            card = render_card(change, self._catalog, now, self._form)
        # A session with many questions of its own can make a card longer than a message.
        for part in split_lines(card):
            await self._outbox.add(
                connection, self._chat_ids, "card", part, now=now, registration_id=change.id
            )
