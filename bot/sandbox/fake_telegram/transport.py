"""The two ways a bot reaches the model: over HTTP on 127.0.0.1 (`serve`, for the real bot
process and aiogram's own session) or in-process as an aiogram session (`FakeSession`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

from aiogram.client.session.base import BaseSession
from aiogram.exceptions import TelegramNetworkError
from aiogram.methods.base import TelegramMethod, TelegramType
from aiohttp import web

from bot.sandbox.fake_telegram.fake import FakeTelegram
from bot.sandbox.fake_telegram.model import (
    JSON,
    BotAPIError,
    DroppedConnection,
    GarbledResponse,
    UploadedFile,
)

if TYPE_CHECKING:
    from aiogram import Bot
    from aiogram.types import InputFile

# aiohttp refuses bodies over 1 MiB by default; Telegram takes documents up to 50 MB.
MAX_UPLOAD_BYTES = 50 * 1024 * 1024


async def _read_params(request: web.Request) -> JSON:
    params: JSON = dict(request.query)
    if request.method != "POST":
        return params
    if request.content_type == "application/json":
        body = await request.json()
        if isinstance(body, dict):
            params.update(body)
        return params
    form = await request.post()
    for key, value in form.items():
        if isinstance(value, web.FileField):
            params[key] = UploadedFile(filename=value.filename, content=value.file.read())
        else:
            params[key] = value
    return params


@asynccontextmanager
async def serve(fake: FakeTelegram) -> AsyncIterator[str]:
    async def endpoint(request: web.Request) -> web.Response:
        if request.match_info["token"] != fake.token:
            return web.json_response(BotAPIError(401, "Unauthorized").body(), status=401)
        params = await _read_params(request)
        try:
            result = await fake.handle(request.match_info["method"], params)
        except BotAPIError as error:
            return web.json_response(error.body(), status=error.code)
        except GarbledResponse:
            if request.transport is not None:
                request.transport.write(b"HTTP/1.1 2OO NOT OK\r\nGarbage\r\n\r\n")
                request.transport.close()
            return web.Response(status=500)  # never reaches the client
        except DroppedConnection:
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)  # never reaches the client
        return web.json_response({"ok": True, "result": result})

    app = web.Application(client_max_size=MAX_UPLOAD_BYTES)
    app.router.add_get("/bot{token}/{method}", endpoint)
    app.router.add_post("/bot{token}/{method}", endpoint)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        # A long-polling getUpdates would otherwise hold the shutdown for its whole timeout.
        fake.release_polling(released=True)
        await fake.close()
        await runner.cleanup()
        fake.release_polling(released=False)


class FakeSession(BaseSession):
    """An aiogram session that answers from the model and can never reach the network."""

    def __init__(self, fake: FakeTelegram) -> None:
        super().__init__()
        self.fake = fake

    async def build_params(self, bot: Bot, method: TelegramMethod[Any]) -> JSON:
        # Mirrors AiohttpSession.build_form_data so both modes see byte-identical parameters.
        files: dict[str, InputFile] = {}
        params: JSON = {}
        for key, value in method.model_dump(warnings=False).items():
            prepared = self.prepare_value(value, bot=bot, files=files)
            if not prepared:
                continue
            params[key] = prepared
        for key, input_file in files.items():
            content = b"".join([chunk async for chunk in input_file.read(bot)])
            params[key] = UploadedFile(filename=input_file.filename or key, content=content)
        return params

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,  # noqa: ASYNC109 (aiogram's signature)
    ) -> TelegramType:
        try:
            status_code, body = await asyncio.wait_for(
                self._answer(bot, method), timeout or self.timeout
            )
        except TimeoutError:
            # What aiogram's aiohttp session raises when a request times out.
            raise TelegramNetworkError(method=method, message="Request timeout error") from None
        response = self.check_response(
            bot=bot,
            method=method,
            status_code=status_code,
            content=self.json_dumps(body),
        )
        return cast(TelegramType, response.result)

    async def _answer(self, bot: Bot, method: TelegramMethod[Any]) -> tuple[int, JSON]:
        if bot.token != self.fake.token:
            return 401, BotAPIError(401, "Unauthorized").body()
        params = await self.build_params(bot, method)
        try:
            result = await self.fake.handle(method.__api_method__, params)
        except BotAPIError as error:
            return error.code, error.body()
        except DroppedConnection:
            raise TelegramNetworkError(method=method, message="Connection dropped") from None
        return 200, {"ok": True, "result": result}

    def stream_content(
        self,
        url: str,
        headers: dict[str, Any] | None = None,
        timeout: int = 30,
        chunk_size: int = 65536,
        raise_for_status: bool = True,
    ) -> AsyncGenerator[bytes, None]:
        msg = "file downloads are not modelled by the fake Bot API"
        raise NotImplementedError(msg)

    async def close(self) -> None:
        pass
