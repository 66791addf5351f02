"""The bot's behaviour as aiogram routers, by audience; `get_routers` gives them in order."""

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiogram import BaseMiddleware, Router
from aiogram.filters import Filter
from aiogram.filters.callback_data import CallbackData, CallbackQueryFilter
from aiogram.types import TelegramObject

from bot.domain.form import FormFields
from handlers import (
    admin,
    broadcast,
    common,
    erase,
    forget,
    language,
    my_registrations,
    organizer,
    refusals,
    registration,
    start,
)
from handlers.common import on_error
from handlers.filters import ButtonOf, FromUsers, InPrivateChat, IsCommand
from handlers.replies import repeat_question

__all__ = ["Provide", "get_routers", "on_error", "repeat_question"]


def get_routers(
    admin_ids: Iterable[int], services: Mapping[str, Any], form: FormFields
) -> list[Router]:
    """Routers in the order they are asked; the first handler whose filters pass wins.

    1. the form, in private chats only (in groups it would expose answers to everyone): any
       message in its states that is no command (`AnswerIn`, one check), and its buttons
       (one prefix check). First, because nearly every update is an answer or a press of
       one of its buttons, and each router level and filter before it would cost every such
       update; it takes no command, so commands work in the middle of a form, and no state
       of its is another router's.
    2. private: the rest of every conversation with a person, checked once for all of them:
       a. admin (ADMIN_IDS): the commands (/erase and /audit among them), then /broadcast,
          whose form takes any message in its state; /start sets the admin's menu and goes
          on.
       b. commands: the routers whose messages are all commands, passed over in one check by
          every other message: admin commands and buttons refused to everyone else, then
          starting and consent, then /me, /forget, /language, then the form's: /cancel and
          any other command during the form, refused. Their buttons go through as before.
    3. common: groups, then whatever message or button no one else took, so it comes after
       everything that could take one.
    4. organizer: the bot added to or removed from a chat. Last: nothing else handles
       chat membership, and every message and button would otherwise pay for a pass
       through its router first.

    Access is declared once per audience, on its parent router: a participant's update
    skips all the admin handlers in one filter call. Each router level and filter call is
    CPU on every update that passes it (bench/ANALYSIS.md), hence so few of them.

    `services` (bot.app.AppDispatcher) reach only the handlers that take them, the admins'
    and the organizer router's, when one is called: every other update goes without them.
    """
    is_admin = FromUsers(admin_ids)
    admins = _only(Router(name="admin"), is_admin)
    admins.include_routers(
        *map(
            _buttons_first,
            (admin.create_router(), erase.create_router(), broadcast.create_router()),
        )
    )
    admins.message.middleware(Provide(services))
    admins.callback_query.middleware(Provide(services))
    commands = Router(name="commands")
    # Both kinds of update: a filter on the message observer alone lets buttons through.
    commands.message.filter(IsCommand())
    # /me, /forget and /language take services too (personal data, languages): rare updates.
    provided = [
        _buttons_first(module.create_router()) for module in (my_registrations, forget, language)
    ]
    for router in provided:
        router.message.middleware(Provide(services))
        router.callback_query.middleware(Provide(services))
    commands.include_routers(
        _only(_buttons_first(refusals.create_router()), ~is_admin),
        _buttons_first(start.create_router()),
        *provided,
        registration.create_command_router(form),
    )
    _buttons_first(commands)
    answers = _only(_buttons_first(registration.create_router(form)), None, private=True)
    private = _only(Router(name="private"), None, private=True)
    private.include_routers(admins, commands)
    chat_members = organizer.create_router()
    chat_members.my_chat_member.middleware(Provide(services))
    return [answers, private, common.create_router(), chat_members]


class Provide(BaseMiddleware):
    """Adds `objects` to the keyword arguments of the handler about to be called (an inner
    middleware: after the filters, only when a handler of its router or below was found)."""

    def __init__(self, objects: Mapping[str, Any]) -> None:
        self._objects = objects

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        data.update(self._objects)
        return await handler(event, data)


def _buttons_first(router: Router) -> Router:
    """`router`, its buttons first told apart by their callback data's prefix, when each of
    its button handlers, and of its routers', takes the buttons of one `CallbackData`
    factory (none takes any button): a button of another router passes it by in one check
    (`ButtonOf`) instead of one unpacking per handler. A press of "confirm" went through 14
    such checks on its way to the form's handler; now through two prefix checks, the
    commands' router's and the form's. Added before any other router filter, so that it is
    the first check."""
    factories = _button_factories(router)
    if factories:
        router.callback_query.filter(ButtonOf(factories))
    return router


def _button_factories(router: Router) -> list[type[CallbackData]] | None:
    """The factories whose buttons `router` and its routers take; None: one takes any."""
    factories: list[type[CallbackData]] = []
    for handler in router.callback_query.handlers:
        found = [
            filter_.callback.callback_data
            for filter_ in handler.filters or ()
            if isinstance(filter_.callback, CallbackQueryFilter)
        ]
        if not found:
            return None
        factories.extend(found)
    for sub_router in router.sub_routers:
        inner = _button_factories(sub_router)
        if inner is None:
            return None
        factories.extend(inner)
    return factories


def _only(router: Router, who: Filter | None, *, private: bool = False) -> Router:
    """`router`'s messages and buttons, only from private chats when `private`, only of the
    people `who` lets through when given."""
    message_filters: list[Filter] = [InPrivateChat()] if private else []
    callback_filters: list[Filter] = [InPrivateChat(button=True)] if private else []
    if who is not None:
        message_filters.append(who)
        callback_filters.append(who)
    router.message.filter(*message_filters)
    router.callback_query.filter(*callback_filters)
    return router
