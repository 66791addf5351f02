"""The bot's behaviour as aiogram routers, by audience; `get_routers` gives them in order."""

from collections.abc import Iterable

from aiogram import F, Router
from aiogram.enums import ChatType
from aiogram.filters import Filter

from handlers import (
    admin,
    broadcast,
    common,
    erase,
    forget,
    my_registrations,
    organizer,
    refusals,
    registration,
    start,
)
from handlers.common import on_error
from handlers.filters import Magic
from handlers.replies import repeat_question

__all__ = ["get_routers", "on_error", "repeat_question"]


def get_routers(admin_ids: Iterable[int]) -> list[Router]:
    """Routers in the order they are asked; the first handler whose filters pass wins.

    1. admin (private chats of ADMIN_IDS): the commands (/erase and /audit among them), then
       /broadcast, whose form takes any message in its state. First, so that they work
       even in the middle of a form; /start sets the admin's menu and goes on.
    2. admin_refusals (private chats of everyone else): admin commands and buttons are
       refused, before the form could take "/stats" for an answer.
    3. participant (private chats): starting and consent, /me, /forget, then the form; the commands
       come before the form's handlers, which take any message in their state.
    4. common: groups, then whatever message or button no one else took, so it comes after
       everything that could take one.
    5. organizer: the bot added to or removed from a chat. Last: nothing else handles
       chat membership, and every message and button would otherwise pay for a pass
       through its router first.

    Access is declared once per audience, on its parent router: a participant's update
    (nearly every update) skips all the admin handlers in one filter call.
    """
    is_admin = Magic(F.from_user.id.in_(frozenset(admin_ids)))
    return [
        _audience(
            "admin",
            is_admin,
            admin.create_router(),
            erase.create_router(),
            broadcast.create_router(),
        ),
        _audience("admin_refusals", ~is_admin, refusals.create_router()),
        _audience(
            "participant",
            None,
            start.create_router(),
            my_registrations.create_router(),
            forget.create_router(),
            registration.create_router(),
        ),
        common.create_router(),
        organizer.create_router(),
    ]


def _audience(name: str, who: Filter | None, *routers: Router) -> Router:
    """A parent router for private chats (in groups the form would expose answers to
    everyone), of the people `who` lets through when given."""
    parent = Router(name=name)
    people = (who,) if who is not None else ()
    parent.message.filter(Magic(F.chat.type == ChatType.PRIVATE), *people)
    parent.callback_query.filter(Magic(F.message.chat.type == ChatType.PRIVATE), *people)
    parent.include_routers(*routers)
    return parent
