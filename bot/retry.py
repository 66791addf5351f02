"""Retries for the bot's replies: a flood wait, a 5xx or a dropped connection should not
cost a participant their answer. The outbox sender and the poller retry on their own
terms and switch this off (`RETRIES_OFF`)."""

from __future__ import annotations

import asyncio
import logging
import random
from contextvars import ContextVar
from typing import TYPE_CHECKING, cast

from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import AnswerCallbackQuery, GetUpdates, Response
from aiogram.methods.base import TelegramType

if TYPE_CHECKING:
    from aiogram import Bot
    from aiogram.methods import TelegramMethod

logger = logging.getLogger(__name__)

RETRIES_OFF: ContextVar[bool] = ContextVar("RETRIES_OFF", default=False)


class RetryRequests(BaseRequestMiddleware):
    def __init__(
        self, *, attempts: int = 4, base_delay: float = 0.5, max_retry_after: float = 30.0
    ) -> None:
        self._attempts = attempts
        self._base_delay = base_delay
        # A reply that would wait longer than this is no longer a reply.
        self._max_retry_after = max_retry_after

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        if RETRIES_OFF.get() or isinstance(method, GetUpdates):
            return await make_request(bot, method)
        for attempt in range(1, self._attempts + 1):
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as error:
                if attempt == self._attempts or error.retry_after > self._max_retry_after:
                    raise
                delay = float(error.retry_after)
            except (TelegramServerError, TelegramNetworkError) as error:
                if attempt == self._attempts:
                    raise
                delay = self._base_delay * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
                logger.info(
                    "%s failed (%s); retry %d in %.1f s",
                    method.__api_method__,
                    type(error).__name__,
                    attempt,
                    delay,
                )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover


class ButtonAnswersBestEffort(BaseRequestMiddleware):
    """An answer to a button press only stops the button's spinner. If Telegram will not take
    it (a press delivered again after a crash is "too old"; a storm outlasting the retries),
    the handler goes on with the person's step instead of failing it. Registered before
    RetryRequests, so this sees what is left after the retries."""

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        answering = isinstance(method, AnswerCallbackQuery)
        try:
            return await make_request(bot, method)
        except TelegramAPIError as error:
            if not answering:
                raise
            logger.info("A button's answer was not taken (%s); going on", type(error).__name__)
            return Response[TelegramType](ok=True, result=cast("TelegramType", True))
