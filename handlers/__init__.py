from aiogram import Router

from handlers import common, registration


def get_routers() -> list[Router]:
    """Routers in the order they are asked: the participant flow, then the fallbacks
    (which take whatever no one else did, so they must stay last)."""
    return [registration.create_router(), common.create_router()]
