"""Admin commands: private chats with ADMIN_IDS only; anyone else gets a refusal that says
nothing about the data."""

from __future__ import annotations

from collections.abc import Iterable

from aiogram import F, Router
from aiogram.enums import ChatType
from aiogram.filters import Command
from aiogram.types import Message

from bot.clock import Clock
from bot.digest_worker import DigestScheduler
from bot.texts import t

ADMIN_COMMANDS = ("digest",)


async def digest_now(message: Message, digest: DigestScheduler, clock: Clock) -> None:
    """The digest as the organisers would get it now, to the admin who asked only."""
    messages = await digest.compose(clock())
    if not messages:
        await message.answer(t("digest_no_sessions"))
    for text in messages:
        await message.answer(text)


async def admin_refused(message: Message) -> None:
    await message.answer(t("admin_only"))


def create_router(admin_ids: Iterable[int]) -> Router:
    router = Router(name="admin")
    router.message.filter(F.chat.type == ChatType.PRIVATE)
    is_admin = F.from_user.id.in_(frozenset(admin_ids))
    router.message.register(digest_now, Command("digest"), is_admin)
    # Registered after the admin handlers: whoever reaches it is not an admin.
    router.message.register(admin_refused, Command(*ADMIN_COMMANDS))
    return router
