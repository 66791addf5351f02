"""Every filter and handler of the production dispatcher runs on the event loop.

aiogram runs a filter or handler that is not a coroutine function through `asyncio.to_thread`
(`CallableObject.call`): a plain `F.text` or a `State` used as a filter costs a thread hop per
update that reaches it. handlers/filters.py wraps magic filters in `Magic` and states go in a
`StateFilter`; this test walks the routers so that a plain one cannot slip back in.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.dispatcher.event.handler import CallableObject, FilterObject
from aiogram.enums import ChatType
from aiogram.filters import Command, StateFilter, or_f
from aiogram.filters.callback_data import CallbackQueryFilter
from aiogram.filters.logic import _InvertFilter, _LogicFilter
from aiogram.types import CallbackQuery, Message, TelegramObject, Update

from bot.app import LeanMiddlewareManager, create_dispatcher
from bot.domain.clock import Clock
from bot.domain.config import Settings
from bot.domain.events import EventCatalog
from bot.domain.form import FORM
from handlers.filters import (
    AnswerIn,
    ButtonOf,
    FromUsers,
    HasText,
    InPrivateChat,
    IsCommand,
    Magic,
    TextStartsWith,
)
from handlers.keyboards import (
    ConsentAction,
    ConsentCallback,
    EventChoice,
    SummaryAction,
    SummaryCallback,
)
from handlers.states import Form, field_states, form_states
from storage.database import Database


def nested(filter_: FilterObject) -> Iterator[FilterObject]:
    """The filter and those inside it: `or_f`, `and_f` and `~` call theirs the same way."""
    yield filter_
    inner = filter_.callback
    if isinstance(inner, _InvertFilter):
        yield from nested(inner.target)
    elif isinstance(inner, _LogicFilter):
        for target in getattr(inner, "targets", ()):
            yield from nested(target)


def callables(router: Router, path: str = "") -> Iterator[tuple[str, CallableObject]]:
    """(where, callable) for every handler and filter under `router`, router-level ones too."""
    path = f"{path}/{router.name}"
    for event, observer in router.observers.items():
        # Router-level filters (`router.message.filter(...)`) live in the observer's own
        # handler object; aiogram has no public accessor for them.
        for filter_ in observer._handler.filters or ():
            for each in nested(filter_):
                yield f"{path}.{event} (router filter)", each
        for handler in observer.handlers:
            name = getattr(handler.callback, "__name__", repr(handler.callback))
            yield f"{path}.{event}: {name}", handler
            for filter_ in handler.filters or ():
                for each in nested(filter_):
                    yield f"{path}.{event}: {name} (filter {each.callback!r})", each
    for sub_router in router.sub_routers:
        yield from callables(sub_router, path)


def run_in_threads(router: Router) -> list[str]:
    return [where for where, item in callables(router) if not item.awaitable]


def test_production_filters_and_handlers_are_all_awaitable(dispatcher: Dispatcher) -> None:
    walked = list(callables(dispatcher))
    # The walk reaches the participant form and the admin commands (not only the top).
    assert any("/registration.message: answer_typed" in where for where, _ in walked)
    assert any("/private/admin/admin_commands.message: stats_shown" in where for where, _ in walked)
    assert run_in_threads(dispatcher) == []


async def _handler(message: Message) -> None:
    pass


@pytest.mark.parametrize(
    "filters",
    [
        (F.text,),
        (Form.consent,),  # a State is a plain callable, unlike StateFilter
        (or_f(Magic(F.text), F.contact),),
        (~Magic(F.text), ~F.contact),
    ],
    ids=["magic", "state", "inside_or_f", "inverted"],
)
def test_walk_finds_a_synchronous_filter_when_one_is_added(
    dispatcher: Dispatcher, filters: tuple[object, ...]
) -> None:
    throwaway = Router(name="throwaway")
    throwaway.message.register(_handler, Command("x"), *filters)
    dispatcher.include_router(throwaway)

    [found] = run_in_threads(dispatcher)

    assert "/throwaway.message: _handler (filter " in found


def test_walk_finds_a_synchronous_router_filter_and_handler() -> None:
    parent, child = Router(name="parent"), Router(name="child")
    parent.message.filter(F.chat.type == "private")
    child.message.register(lambda message: None, StateFilter(Form.consent))
    parent.include_router(child)

    assert run_in_threads(parent) == [
        "/parent.message (router filter)",
        "/parent/child.message: <lambda>",
    ]


def test_every_router_level_wraps_its_middlewares_without_functools_wraps(
    dispatcher: Dispatcher,
) -> None:
    # bot/app.py: LeanMiddlewareManager; aiogram's own copies five attributes at each of
    # the nine or so wraps of an update (-3% of the instructions per update, bench/ANALYSIS.md).
    managers = [
        (router.name, event, manager)
        for router in dispatcher.chain_tail
        for event, observer in router.observers.items()
        for manager in (observer.middleware, observer.outer_middleware)
    ]
    assert managers
    assert [m for m in managers if not isinstance(m[2], LeanMiddlewareManager)] == []


def _message(chat_type: str, user_id: int, **content: object) -> Message:
    chat_id = user_id if chat_type == "private" else -100123
    return Message.model_validate(
        {
            "message_id": 1,
            "date": 0,
            "chat": {"id": chat_id, "type": chat_type},
            "from": {"id": user_id, "is_bot": False, "first_name": "Иван"},
            **content,
        }
    )


def _verdict(result: object) -> object:
    # How aiogram reads a filter's result: a dict goes to the handler, else truthiness.
    return result if isinstance(result, dict) else bool(result)


async def test_written_out_filters_decide_as_the_magic_filters_they_replace() -> None:
    admins = frozenset({500})
    messages = [
        _message(chat_type, user_id, **content)
        for chat_type in ("private", "group", "supergroup")
        for user_id in (500, 1001)
        for content in (
            {"text": "Иванова Мария"},
            {"text": "/start"},
            {"text": " /start"},
            {"caption": "/start", "photo": []},
            {"contact": {"phone_number": "+79123456789", "first_name": "Иван"}},
        )
    ]
    buttons = [
        CallbackQuery.model_validate(
            {
                "id": "1",
                "from": {"id": user_id, "is_bot": False, "first_name": "Иван"},
                "chat_instance": "1",
                "data": "x",
                **({"message": message.model_dump()} if message is not None else {}),
            }
        )
        for user_id in (500, 1001)
        for message in (messages[0], messages[10], None)
    ]
    pairs: list[tuple[object, object, list[TelegramObject]]] = [
        (InPrivateChat(), Magic(F.chat.type == ChatType.PRIVATE), [*messages]),
        (InPrivateChat(button=True), Magic(F.message.chat.type == ChatType.PRIVATE), [*buttons]),
        (FromUsers(admins), Magic(F.from_user.id.in_(admins)), [*messages, *buttons]),
        (HasText("text"), Magic(F.text.as_("text")), [*messages]),
        (HasText(), Magic(F.text), [*messages]),
        (TextStartsWith("/"), Magic(F.text.startswith("/")), [*messages]),
    ]
    for written, magic, events in pairs:
        for event in events:
            assert _verdict(await written(event)) == _verdict(await magic(event)), (written, event)  # type: ignore[operator]


def _routers(router: Router, path: str = "") -> Iterator[tuple[str, Router]]:
    path = f"{path}/{router.name}"
    yield path, router
    for sub_router in router.sub_routers:
        yield from _routers(sub_router, path)


def _button_prefixes(router: Router) -> set[str] | None:
    """The prefixes the router's ButtonOf filter lets through; None: it has none."""
    for filter_ in router.callback_query._handler.filters or ():
        if isinstance(filter_.callback, ButtonOf):
            return set(filter_.callback.prefixes)
    return None


def _handled_prefixes(router: Router) -> set[str] | None:
    """The prefixes the button handlers of `router` and its routers unpack; None: one of
    them takes any button."""
    prefixes: set[str] = set()
    for handler in router.callback_query.handlers:
        own = {
            each.callback.callback_data.__prefix__
            for each in handler.filters or ()
            if isinstance(each.callback, CallbackQueryFilter)
        }
        if not own:
            return None
        prefixes |= own
    for sub_router in router.sub_routers:
        inner = _handled_prefixes(sub_router)
        if inner is None:
            return None
        prefixes |= inner
    return prefixes


def test_a_router_told_apart_by_button_prefix_lets_every_button_of_its_handlers_through(
    dispatcher: Dispatcher,
) -> None:
    # handlers/__init__.py, _buttons_first: a router whose button handlers, and its
    # routers', each take one CallbackData factory's buttons gets a ButtonOf with exactly
    # those prefixes, as its first router filter; a router with a handler for any button,
    # or above one, gets none.
    told_apart = []
    for path, router in _routers(dispatcher):
        prefixes = _button_prefixes(router)
        if prefixes is None:
            continue
        told_apart.append(path)
        assert _handled_prefixes(router) == prefixes, path
        first = (router.callback_query._handler.filters or [])[0].callback
        assert isinstance(first, ButtonOf), path
    assert any(path.endswith("/private/commands") for path in told_apart)
    assert any(path.endswith("/private/commands/start") for path in told_apart)
    assert any(path.endswith("/registration") for path in told_apart)
    # The catch-all for expired buttons is never passed by.
    assert not any(path.endswith("/common") for path in told_apart)


@pytest.mark.parametrize(
    ("data", "passes"),
    [
        (SummaryCallback(action=SummaryAction.confirm, event_id="s1").pack(), True),
        (ConsentCallback(action=ConsentAction.agree).pack(), True),
        # Its own prefix, fields that would not unpack: through, and its handlers refuse it
        # as they did before.
        ("summary", True),
        ("consent:maybe", True),
        # Another router's, or no one's.
        (EventChoice(event_id="s1").pack(), False),
        ("summaryx:confirm", False),
        ("summar", False),
        (":summary", False),
        ("", False),
        (None, False),
    ],
)
async def test_button_prefix_check_lets_through_its_factories_buttons_only(
    data: str | None, passes: bool
) -> None:
    check = ButtonOf([SummaryCallback, ConsentCallback])
    query = CallbackQuery.model_validate(
        {
            "id": "1",
            "from": {"id": 1, "is_bot": False, "first_name": "Иван"},
            "chat_instance": "1",
            **({"data": data} if data is not None else {}),
        }
    )
    assert await check(query) is passes
    assert check.prefixes == {"summary", "consent"}


async def test_answer_in_decides_as_the_state_and_no_command_checks_it_replaces() -> None:
    # handlers/filters.py, AnswerIn: the form's router filter, one check where a StateFilter
    # and a negated IsCommand would be two.
    states = form_states(FORM)
    written = AnswerIn(states)
    composite = [StateFilter(Form, *field_states(FORM)), ~IsCommand()]
    messages = [
        _message("private", 1001, **content)
        for content in (
            {"text": "Иванова Мария"},
            {"text": "/start"},
            {"text": " /cancel"},
            {"caption": "/start", "photo": []},
            {"caption": "фото", "photo": []},
            {"contact": {"phone_number": "+79123456789", "first_name": "Иван"}},
        )
    ]
    raw_states = [None, *states, "BroadcastForm:writing", "Form"]
    decided = []
    for message in messages:
        for raw_state in raw_states:
            expected = all([await each(message, raw_state=raw_state) for each in composite])
            got = await written(message, raw_state=raw_state)
            assert got == expected, (message.text or message.caption, raw_state)
            decided.append(got)
    assert True in decided and False in decided


def _form_answer_states(router: Router, under_commands: bool = False) -> Iterator[str]:
    """The form's states in which a message handler outside the form's own router could
    take a message that is no command."""
    under_commands = under_commands or any(
        isinstance(each.callback, IsCommand) for each in router.message._handler.filters or ()
    )
    if router.name != "registration" and not under_commands:
        for handler in router.message.handlers:
            for each in handler.filters or ():
                if isinstance(each.callback, StateFilter):
                    for state in each.callback.states:
                        names = getattr(state, "__all_states_names__", None)
                        yield from names or (getattr(state, "state", state),)
    for sub_router in router.sub_routers:
        yield from _form_answer_states(sub_router, under_commands)


def test_the_form_is_asked_first_and_its_states_are_its_own(dispatcher: Dispatcher) -> None:
    # handlers/__init__.py: answers skip every other router, which is right only while no
    # other router takes a message that is no command in one of the form's states.
    first = dispatcher.sub_routers[0]
    assert first.name == "registration"
    filters = [each.callback for each in first.message._handler.filters or ()]
    assert [type(each) for each in filters] == [AnswerIn, InPrivateChat]
    taken_elsewhere = set(_form_answer_states(dispatcher)) & set(form_states(FORM))
    assert taken_elsewhere == set()
    assert "BroadcastForm:writing" in set(_form_answer_states(dispatcher))  # the walk sees them


async def test_filters_see_aiogram_s_keywords_only_and_handlers_get_ours(
    dispatcher: Dispatcher, bot: Bot
) -> None:
    # bot/app.py, AppDispatcher: none of the app's objects rides through routing as workflow
    # data (each key is copied at every router level and filter call); the participants'
    # objects reach the handler about to be called.
    assert dispatcher.workflow_data == {}
    seen: dict[str, set[str]] = {}

    async def spy_filter(message: Message, **kwargs: object) -> bool:
        seen["filter"] = set(kwargs)
        return True

    async def spy_handler(message: Message, **kwargs: object) -> None:
        seen["handler"] = set(kwargs)

    spy = Router(name="spy")
    spy.message.register(spy_handler, spy_filter)
    dispatcher.include_router(spy)
    dispatcher.sub_routers.insert(0, dispatcher.sub_routers.pop())  # asked first
    await dispatcher.feed_update(bot, Update(update_id=1, message=_message("group", 1001)))

    ours = {"catalog", "form", "registrations", "seats", "reminders", "clock"}
    assert seen["filter"] & ours == set()
    assert ours <= seen["handler"]


async def test_app_objects_added_after_the_dispatcher_are_found_and_given_to_the_hooks(
    settings: Settings, db: Database, catalog: EventCatalog, clock: Clock
) -> None:
    # A replica's leadership is a service added once the dispatcher is made; the leader,
    # once its startup hook ran. `dispatcher[name]` and the hooks must see both.
    leadership = object()
    dispatcher = create_dispatcher(
        settings=settings,
        db=db,
        catalog=catalog,
        clock=clock,
        leadership=leadership,  # type: ignore[arg-type]
    )
    assert dispatcher["leadership"] is leadership
    assert dispatcher["catalog"] is dispatcher.handler_data["catalog"]
    got: dict[str, object] = {}

    async def hook(**kwargs: object) -> None:
        got.update(kwargs)

    dispatcher.services["later"] = "added"
    dispatcher.startup.handlers.clear()
    dispatcher.startup.register(hook)
    await dispatcher.emit_startup()
    assert got["leadership"] is leadership
    assert got["later"] == "added"
    assert got["clock"] is clock
    assert dispatcher.get("later") == "added"
    assert dispatcher.get("nothing") is None
