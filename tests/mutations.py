"""Mutations of a decoded JSON file, for the tests that check every field of a file we wrote is
validated on read: each leaf and container replaced (or deleted) by each of `kinds`."""
from __future__ import annotations

import copy

KINDS = {"delete": None, "string": "12", "negative": -1, "huge": 10 ** 30, "float": 0.5, "bool": True,
         "null": None, "list": [1, 2]}


def leaves(obj, path=()):
    """Every path into obj (dict keys, list indices), containers included, the root last."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from leaves(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from leaves(v, path + (i,))
    yield path


def mutations(good: dict, kinds: dict = KINDS):
    """(path, kind, mutated copy) for every path and kind that changes the object (list items are
    replaced, never deleted)."""
    for path in leaves(good):
        if not path:
            continue
        for kind, value in kinds.items():
            if kind == "delete" and isinstance(path[-1], int):
                continue
            bad = copy.deepcopy(good)
            obj = bad
            for p in path[:-1]:
                obj = obj[p]
            if kind == "delete":
                del obj[path[-1]]
            else:
                obj[path[-1]] = value
            if bad != good:
                yield path, kind, bad
