"""HTML fragments shared by several messages. Values are escaped by `t`."""

from __future__ import annotations

from collections.abc import Mapping

from bot.domain.events import Event
from bot.domain.form import NO, YES, Question, option_labels, question_text
from bot.domain.texts import LOCALE, Html, quantity, t, th
from bot.domain.timefmt import format_datetime
from bot.domain.validation import format_phone


def event_card(event: Event, *, deadline: bool = False, join_url: bool = False) -> Html:
    """The session's title, time and place (and deadline, link): shown at nearly every step
    of the form, the same each time for a session and language, so made once for them."""
    key = (
        event.id,
        event.title,
        event.starts_at,
        event.timezone,
        event.location,
        event.registration_deadline if deadline else None,
        event.join_url if join_url else None,
        LOCALE.get(),
    )
    card = _CARDS.get(key)
    if card is None:
        card = _event_card(event, deadline=deadline, join_url=join_url)
        if len(_CARDS) >= _CARDS_LIMIT:
            _CARDS.clear()
        _CARDS[key] = card
    return card


_CARDS_LIMIT = 1024
_CARDS: dict[tuple[object, ...], Html] = {}


def _event_card(event: Event, *, deadline: bool, join_url: bool) -> Html:
    lines = [
        t(
            "event_card",
            title=event.title,
            when=format_datetime(event.starts_at, event.timezone),
            location=event.location,
        )
    ]
    if deadline:
        lines.append(t("event_deadline", deadline=format_datetime(event.registration_deadline)))
    if join_url and event.join_url:
        lines.append(t("event_join_url", url=event.join_url))
    return Html("\n".join(lines))


def shown_value(field: str, value: str) -> str:
    return format_phone(value) if field == "phone" and value else value


def answers(
    values: Mapping[str, str],
    questions: tuple[Question, ...] = (),
    extra: Mapping[str, str] | None = None,
    locale: str = "ru",
) -> Html:
    """The standard answers, then the event's own: each question of the file (skipped or
    unanswered: a dash), then any stored answer to a question gone from the file, by its id.
    (`extra` may hold the standard answers kept in `answers` too: they are shown once.)"""
    lines = [
        t("answer_line", question=t(f"field_{field}"), answer=shown_value(field, value))
        for field, value in values.items()
    ]
    extra = extra or {}
    for question in questions:
        value = shown_answer(question, extra.get(question.id, ""), locale)
        lines.append(answer_line(question_text(question, locale), value))
    known = {question.id for question in questions}.union(values)
    lines.extend(answer_line(key, value) for key, value in extra.items() if key not in known)
    return Html("\n".join(lines))


def shown_answer(question: Question, value: str, locale: str = "ru") -> str:
    """A stored answer as the reader reads it: the stored Russian option in their language
    where the file gives it, a yes/no as its button says."""
    if question.kind == "yes_no" and value in (YES, NO):
        return t("button_yes" if value == YES else "button_no")
    if question.kind == "choice" and value in question.options:
        return option_labels(question, locale)[question.options.index(value)]
    return value


def answer_line(question: str, answer: str) -> str:
    return t("answer_line", question=question, answer=answer or Html(t("answer_skipped")))


def contacts_line(contacts: list[str]) -> str:
    return "\n\n" + t("contact_line", contact=", ".join(contacts)) if contacts else ""


def retention_rule(days: int) -> Html:
    """When a registration's data is erased, in words: "через 30 дней после окончания…"."""
    if days == 0:
        return th("retention_next_day")
    return th("retention_after_days", days=quantity(days, "unit_days"))


def privacy_policy(event: Event, retention_days: int) -> str:
    """The policy consent is asked for: the event's own, else the default one, which states
    how long the data is kept."""
    return event.privacy_policy or t(
        "consent_default_policy", retention=retention_rule(retention_days)
    )
