"""Identity of a sweep function: which code computed a cached point.

``module:qualname`` of the function, the bound arguments of :func:`functools.partial` wrappers,
and a hash of the function's source (or a user-given ``fn_version``). Code the function calls
is not seen here; the cache key adds the hash of the whole corrlib source for the library part
(:func:`corrlib._util.source_hash`).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import marshal
from collections.abc import Callable
from typing import Any

__all__ = ["fn_identity"]


def _source_hash(obj: Any) -> str | None:
    for target in (obj, type(obj)):
        try:
            src = inspect.getsource(target)
        except (OSError, TypeError):
            continue
        return "src:" + hashlib.sha256(src.encode("utf-8")).hexdigest()
    code = getattr(obj, "__code__", None)
    if code is not None:
        return "code:" + hashlib.sha256(marshal.dumps(code)).hexdigest()
    return None


def fn_identity(fn: Callable, fn_version: str | None = None) -> str:
    """``module:qualname`` of ``fn`` plus a hash of its source (or ``fn_version``).

    :func:`functools.partial` objects add the ``repr`` of their bound arguments.

    Examples
    --------
    >>> fn_identity(len, fn_version="1")
    'builtins:len|version:1'
    """
    target, bound = fn, []
    while isinstance(target, functools.partial):
        bound.append(repr((target.args, sorted(target.keywords.items()))))
        target = target.func
    module = getattr(target, "__module__", None) or type(target).__module__
    qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
    ident = f"{module}:{qualname}"
    if bound:
        ident += "|partial:" + "|".join(reversed(bound))
    if fn_version is not None:
        version = f"version:{fn_version}"
    else:
        version = _source_hash(target) or "unversioned"
    return f"{ident}|{version}"
