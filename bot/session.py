"""The Bot API session: aiogram's aiohttp session, with a method's plain values prepared
without aiogram's chain of type checks, and a sent message's echo of what the bot sent left
unparsed.

aiogram writes every field of every method it sends through `BaseSession.prepare_value`,
which asks each value, and each item of each keyboard inside it, up to ten `isinstance`
questions (a default? a file? a date? an enum? a model?) by a call with keyword arguments:
about 40 calls for a message with the summary's keyboard. Nearly every value is plain JSON
already (a string, a number, and dicts and lists of them: a keyboard once dumped).
`PlainValues` prepares those by their exact type and gives everything else, for the whole
value, to aiogram's own function, so the result is the same (tests/test_session.py
compares the two).

Telegram answers a sendMessage (an edit, a document) with the message as it now stands: the
keyboard the bot attached, the entities its HTML became, the preview options it asked for.
aiogram builds an object for each (a keyboard of 7 buttons: 8 models, each told its bot), and
the bot reads none of them: a sent message's id and chat are what it keeps. `UnechoedAnswers`
drops those echoed fields before the answer is parsed (a message answer with the summary's
keyboard: 39 -> 15 us). A successful answer's text is parsed once, here (aiogram's check would
parse it again); every failure is aiogram's own `check_response`.

aiogram sends every method as a form, and aiohttp writes a form's fields by
`urllib.parse.urlencode`, which percent-encodes a text's every byte outside ASCII in Python:
each letter of a Russian text is six characters made one at a time. Telegram takes the same
fields as a JSON body (`application/json`), which orjson writes at once. `JsonBodies` sends a
method that carries no file so; one with a file (a document) goes as aiogram sends it.
"""

from __future__ import annotations

from contextlib import suppress
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast

import orjson
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.base import BaseSession
from aiogram.exceptions import TelegramNetworkError
from aiogram.methods.base import Response
from aiohttp import ClientError, ClientTimeout
from pydantic import ValidationError

if TYPE_CHECKING:
    from aiogram import Bot
    from aiogram.methods.base import TelegramMethod, TelegramType

# What aiogram returns as it is inside a dict or list (and writes as JSON on its own).
_SCALARS = frozenset({str, int, float, bool})


class _NotPlain(Exception):
    """A value aiogram prepares in its own way (a default, a file, an enum, a date, a model,
    a subclass of a plain type): the whole value goes to aiogram's `prepare_value`."""


def _plain(value: Any) -> Any:
    """`value` as aiogram's `prepare_value` gives it inside a dict or list, when it is plain
    JSON: dict entries and list items that are None left out, as aiogram leaves them."""
    kind = type(value)
    if kind in _SCALARS or value is None:
        return value
    if kind is dict:
        return {key: item for key, raw in value.items() if (item := _plain(raw)) is not None}
    if kind is list:
        return [item for raw in value if (item := _plain(raw)) is not None]
    raise _NotPlain


class PlainValues(BaseSession):
    """`prepare_value` for plain values by their exact type; aiogram's for the rest."""

    def prepare_value(
        self,
        value: Any,
        bot: Bot,
        files: dict[str, Any],
        _dumps_json: bool = True,
    ) -> Any:
        kind = type(value)
        if kind is str or value is None:
            return value
        if kind is dict or kind is list:
            try:
                plain = _plain(value)
            except _NotPlain:
                return super().prepare_value(value, bot, files, _dumps_json)
            return self.json_dumps(plain) if _dumps_json else plain
        if kind in _SCALARS:
            return self.json_dumps(value) if _dumps_json else value
        return super().prepare_value(value, bot, files, _dumps_json)


# A sent message's fields that only repeat what the bot sent with it. None on the message the
# bot gets back: it never reads them (a test asserts that the rest parses as aiogram's does).
ECHOED = ("reply_markup", "entities", "caption_entities", "link_preview_options")


class UnechoedAnswers(BaseSession):
    """A successful answer parsed once, as aiogram's `check_response` would, a message
    without its echo (`ECHOED`); every failure by aiogram's `check_response`."""

    def check_response(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        status_code: int,
        content: str,
    ) -> Response[TelegramType]:
        if status_code == HTTPStatus.OK:
            try:
                data = self.json_loads(content)
            except Exception:
                data = None  # aiogram's check below names the failure
            if type(data) is dict and data.get("ok") is True:
                result = data.get("result")
                if type(result) is dict and "message_id" in result:
                    for field in ECHOED:
                        result.pop(field, None)
                # As aiogram's check does for an OK answer (a getUpdates batch, a True),
                # without parsing the text again.
                with suppress(ValidationError):  # aiogram's check below names it
                    return Response[method.__returning__].model_validate(  # type: ignore[name-defined]
                        data, context={"bot": bot}
                    )
        return super().check_response(bot, method, status_code, content)


_JSON_BODY = {"Content-Type": "application/json"}


class JsonBodies(AiohttpSession):
    """A method without a file sent as a JSON body; one with a file as aiogram sends it
    (multipart). The fields are those aiogram's form carries: each value prepared by
    `prepare_value`, one that comes out None or empty left out."""

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,  # noqa: ASYNC109 (aiogram's signature)
    ) -> TelegramType:
        files: dict[str, Any] = {}
        fields: dict[str, Any] = {}
        for key, value in method.model_dump(warnings=False).items():
            prepared = self.prepare_value(value, bot=bot, files=files, _dumps_json=False)
            if prepared is not None and prepared != "":
                fields[key] = prepared
        if files:
            return await super().make_request(bot, method, timeout)
        session = await self.create_session()
        url = self.api.api_url(token=bot.token, method=method.__api_method__)
        # As aiogram's make_request, less the form.
        try:
            async with session.post(
                url,
                data=orjson.dumps(fields),
                headers=_JSON_BODY,
                timeout=ClientTimeout(total=self.timeout if timeout is None else timeout),
            ) as response:
                content = await response.text()
        except TimeoutError as error:
            raise TelegramNetworkError(method=method, message="Request timeout error") from error
        except ClientError as error:
            raise TelegramNetworkError(
                method=method, message=f"{type(error).__name__}: {error}"
            ) from error
        answer = self.check_response(
            bot=bot, method=method, status_code=response.status, content=content
        )
        return cast("TelegramType", answer.result)


class BotSession(UnechoedAnswers, PlainValues, JsonBodies):
    """The bot's session to the Bot API (bot/app.py: create_bot)."""
