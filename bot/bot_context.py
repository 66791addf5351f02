"""aiogram's objects told their bot in one step instead of a chain of pydantic's.

Every aiogram object (an update, its message and user, each answer, each button of an
answer's keyboard, each method) is a pydantic model whose one private attribute, `_bot`, is
set after validation by aiogram's `BotContextController.model_post_init`. pydantic wraps that
method again in every subclass (pydantic/_internal/_model_construction.py,
`wrapped_model_post_init`: any class with inherited private attributes gets its own wrapper),
so a `Message` runs four wrappers, each calling `init_private_attributes`, whose first call
resolves `_bot`'s missing default (a deep-copy check) and builds the private dict; then
aiogram's method stores the bot through `BaseModel.__setattr__`. An update and the answers to
it make dozens of these objects.

`install` gives each such class one function that leaves the object exactly as that chain
does: `__pydantic_private__ == {"_bot": <the context's bot, or None>}`. A class is changed only
when `_bot` is its only private attribute and its `model_post_init` unwraps to aiogram's own,
so anything with private state or a post-init of its own (a later aiogram, a later pydantic, a
subclass of ours) keeps pydantic's chain. A class made after `install` wraps the new function
as it wrapped aiogram's: its wrapper sets up its private state, then `_bot` is added to it.
"""

from __future__ import annotations

import inspect
from typing import Any

from aiogram.client.context_controller import BotContextController

_AIOGRAMS = "BotContextController.model_post_init"


def _bind_bot(self: BotContextController, context: Any, /) -> None:
    # As aiogram's model_post_init after pydantic's init_private_attributes.
    bot = context.get("bot") if context else None
    private = getattr(self, "__pydantic_private__", None)
    if private is None:
        object.__setattr__(self, "__pydantic_private__", {"_bot": bot})
    else:  # a class made later, with private state its own wrapper has just set
        private["_bot"] = bot


def _classes(root: type) -> list[type]:
    found: dict[type, None] = {root: None}  # in the order found
    stack: list[type] = [root]
    while stack:
        sub: type
        for sub in stack.pop().__subclasses__():
            if sub not in found:
                found[sub] = None
                stack.append(sub)
    return list(found)


def _chained(cls: type) -> bool:
    """Whether `cls` sets its private state by pydantic's wrappers around aiogram's method
    and nothing else."""
    if set(getattr(cls, "__private_attributes__", ())) != {"_bot"}:
        return False
    method = cls.__dict__.get("model_post_init")
    if method is None or method is _bind_bot:
        return False
    own = inspect.unwrap(method)
    return bool(own.__qualname__ == _AIOGRAMS and own.__module__ == BotContextController.__module__)


def install() -> int:
    """Give every aiogram object class built so far the one-step `model_post_init`; how many
    classes were changed (0 when called again)."""
    changed = 0
    for cls in _classes(BotContextController):
        if _chained(cls):
            setattr(cls, "model_post_init", _bind_bot)  # noqa: B010 (a class found at run time)
            changed += 1
    return changed
