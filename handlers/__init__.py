from aiogram import Router

from handlers import common, organizer, registration


def get_routers() -> list[Router]:
    """Routers in the order they are asked: chat membership (organiser chats), the
    participant flow, then the fallbacks, which take whatever no one else did and so
    must stay last."""
    return [organizer.create_router(), registration.create_router(), common.create_router()]
