"""`cron_restart` expressions: validation and the next firing time (pure: no clock read here).

Grammar, as pm2 users write it (pm2 evaluates them with croner):

- five fields, `minute hour day-of-month month day-of-week`, with the usual lists,
  ranges, steps and names (`0 3 * * mon-fri`, `*/15 * * * *`);
- six fields: a leading **seconds** field, as in croner and pm2 (`*/5 * * * * *`);
- `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`.

Evaluation is croniter's (maintained under pallets-eco): day-of-month and day-of-week
are OR-ed when both are restricted, as in Vixie cron. Times are computed in the zone
of the `now` given (the caller passes the container's local zone, usually UTC).
"""

from __future__ import annotations

from datetime import UTC, datetime

from croniter import CroniterError, croniter

__all__ = ["ALIASES", "next_fire", "normalize_cron", "validate_cron"]

ALIASES: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

EXPECTED = (
    "expected a cron expression: 5 fields (minute hour day month weekday), "
    "6 with seconds first, or @yearly/@monthly/@weekly/@daily/@hourly"
)

# Any fixed instant works: it only proves the expression fires at least once (Feb 30 never does).
_PROBE = datetime(2001, 1, 1, tzinfo=UTC)


class CronSyntaxError(ValueError):
    """An expression outside the grammar above; the message says why."""


def normalize_cron(expr: str) -> str:
    """The expression with aliases expanded and whitespace collapsed; raises CronSyntaxError."""
    text = " ".join(expr.split())
    if text.startswith("@"):
        alias = ALIASES.get(text.lower())
        if alias is None:
            raise CronSyntaxError(f"unknown shortcut {text!r}")
        return alias
    fields = len(text.split(" ")) if text else 0
    if fields not in (5, 6):
        raise CronSyntaxError(f"{fields} fields")
    return text


def _iterator(expr: str, start: datetime) -> croniter:
    return croniter(normalize_cron(expr), start, second_at_beginning=True)


def validate_cron(expr: str) -> str | None:
    """None when `expr` is a usable expression, else a one-line `expected ..., got ...` message.

    The message fits `ConfigError(file, message, key="cron_restart")` (exit 78).
    """
    try:
        _iterator(expr, _PROBE).get_next(datetime)
    except (CronSyntaxError, CroniterError, ValueError, KeyError) as exc:
        reason = str(exc).strip() or type(exc).__name__
        if "failed to find next date" in reason:
            reason = "it never fires"
        return f"{EXPECTED}, got {expr!r} ({reason})"
    return None


def next_fire(expr: str, now_wall: datetime) -> datetime:
    """The first firing time strictly after `now_wall`, in `now_wall`'s zone.

    Raises CronSyntaxError or croniter's errors (ValueError subclasses) for a bad
    expression; callers validate first.
    """
    fire = _iterator(expr, now_wall).get_next(datetime)
    assert isinstance(fire, datetime)
    return fire
