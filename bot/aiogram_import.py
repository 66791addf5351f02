"""aiogram imported with its Telegram types built on first use instead of all at import.

aiogram declares its types with pydantic's `defer_build=True`, yet `aiogram/types/__init__.py`
ends by calling `model_rebuild` on every one of them (about 450) to hand each the namespace its
forward references resolve in, and `model_rebuild` builds. That is most of the CPU of starting
the bot: `import aiogram` took 2.2-2.5 s of CPU on a 2-core AMD VM, of which the loop ~1.9 s,
paid again at every start, restart and rolling deploy, for types a registration bot never sees.

`import_aiogram()` runs that import with the loop reduced to what it is for. The namespace is
put in the globals of the modules that define aiogram's types, where pydantic's deferred build
looks up an annotation's names, and each type is built the first time it is used, except
`Message` and `Update`, which most of the others hold, built at once (80 ms). Only the calls
that pass a types namespace to an aiogram type during this import are changed; everything else
goes to pydantic as it is, and if aiogram stops making those calls the import is the ordinary
one. tests/test_aiogram_import.py builds every aiogram type (and a subclass, and a generic
answer) this way and compares each with aiogram's own import, so a type that could not be
built later fails a test, not an update.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel


def import_aiogram() -> None:
    """Import aiogram (types and methods) with its types' builds deferred to their first use.

    Call before anything imports aiogram; a no-op once it is imported.
    """
    if "aiogram" in sys.modules:
        return
    namespace: dict[str, Any] = {}
    rebuild = BaseModel.__dict__["model_rebuild"]
    build = rebuild.__func__

    def keep_namespace(cls: type[BaseModel], /, **kwargs: Any) -> bool | None:
        given = kwargs.get("_types_namespace")
        if (
            given is None
            or kwargs.get("force")
            or cls.__pydantic_complete__
            or not cls.__module__.startswith("aiogram.")
        ):
            # Called through one more frame than pydantic expects.
            kwargs["_parent_namespace_depth"] = kwargs.get("_parent_namespace_depth", 2) + 1
            result: bool | None = build(cls, **kwargs)
            return result
        namespace.update(given)
        return None

    BaseModel.model_rebuild = classmethod(keep_namespace)  # type: ignore[method-assign, assignment]
    try:
        import aiogram
        import aiogram.methods
        import aiogram.types
    finally:
        BaseModel.model_rebuild = rebuild  # type: ignore[method-assign]
    if not namespace:
        return
    # The names a type's annotations use are looked up in its module's globals (and in the
    # namespace of the model being built, which a subclass or a generic made later, such as
    # `Response[Message]`, does not share): put them where every later build finds them.
    for module in {model.__module__ for model in aiogram_models()}:
        names = vars(sys.modules[module])
        for name, value in namespace.items():
            names.setdefault(name, value)
    # Built now, the hubs: a type that holds a built one reuses its schema, and almost every
    # type a bot uses holds a message. Left to their first use, each of the answers' types
    # (`Response[Message]`, `Response[Message | bool]`, ...) would build the whole message again:
    # 0.38 s of CPU for the bot's ten against 0.09 s with these two built first (AMD VM).
    aiogram.types.Message.model_rebuild(_types_namespace=namespace)
    aiogram.types.Update.model_rebuild(_types_namespace=namespace)


def aiogram_models() -> Iterator[type[BaseModel]]:
    """Every pydantic model class aiogram defines, each once."""
    seen: set[type[BaseModel]] = set()
    waiting = [BaseModel]
    while waiting:
        for model in waiting.pop().__subclasses__():
            if model not in seen:
                seen.add(model)
                waiting.append(model)
                if model.__module__.startswith("aiogram."):
                    yield model
