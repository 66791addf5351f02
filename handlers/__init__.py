from collections.abc import Iterable

from aiogram import Router

from handlers import admin, common, organizer, registration


def get_routers(admin_ids: Iterable[int]) -> list[Router]:
    """Routers in the order they are asked: admin commands (so they work even in the middle
    of a form), chat membership (organiser chats), the participant flow, then the fallbacks,
    which take whatever no one else did and so must stay last."""
    return [
        admin.create_router(admin_ids),
        organizer.create_router(),
        registration.create_router(),
        common.create_router(),
    ]
