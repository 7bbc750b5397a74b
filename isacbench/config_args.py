"""KEY=VALUE arguments: CLI options (`--config`, `--solver-config`, `--decision`) and solver variants."""
from __future__ import annotations

import json
from typing import Iterable

from .api import UserError


def parse_pairs(items: Iterable[str], what: str, raw: bool = False) -> dict:
    """KEY=VALUE strings -> dict. A value is JSON when it parses as JSON, else its text; `raw` keeps
    every value as text (e.g. a decision, which its space parses). `what` names the source in errors."""
    result = {}
    for item in items:
        key, sep, value = (s.strip() for s in item.partition("="))
        if not sep or not key:
            raise UserError(f"{what} {item!r} is not KEY=VALUE")
        result[key] = value if raw else _json_or_text(value)
    return result


def _json_or_text(value: str):
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value
