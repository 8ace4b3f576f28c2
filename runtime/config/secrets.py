"""Which values must never be printed, and their masked form (pure).

Three ways a secret shows up in a spec, all masked wherever specs are printed (`check`,
`show`, `show --json`):

- by its name: an env key, an option (`--db-password=x`, `--token x`) or a `NAME=value`
  argument whose name has a marker, either anywhere in it (SECRET, TOKEN, PASSWORD,
  PASSWD, KEY, CREDENTIAL, PRIVATE, SIGNING, AUTHORIZATION) or as one of its words
  (PASS, PWD, AUTH, JWT, SALT, DSN, CREDS: `DB_PASS`, `SMTP_PWD`, `COOKIE_SALT`, but not
  `AUTHOR` or `PASSENGERS`);
- in a URL: `scheme://user:password@host` keeps everything but the password, whatever
  the key (`DATABASE_URL`, `REDIS_URL`, an argument);
- nothing else is guessed: a secret under a plain name in a plain value stays visible.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence

SECRET_MARKERS = (
    "SECRET", "TOKEN", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL", "PRIVATE", "SIGNING",
    "AUTHORIZATION",
)  # fmt: skip
SECRET_WORDS = frozenset({"PASS", "PWD", "AUTH", "JWT", "SALT", "DSN", "CREDS"})
MASK = "****"

# a word of a name: split at `_`, `-`, `.` and between a lower-case letter and a capital
_WORD_BREAK = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
# scheme://user:password@ (the password without `/`, `@` or spaces)
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/\s@:]*:)([^/\s@]+)@")
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.DOTALL)


def is_secret(name: str) -> bool:
    """Whether a variable or option name says its value is a secret."""
    upper = name.upper()
    if any(marker in upper for marker in SECRET_MARKERS):
        return True
    return any(word.upper() in SECRET_WORDS for word in _WORD_BREAK.split(name) if word)


def mask_value(value: str) -> str:
    """`value` with the password of every `scheme://user:password@host` in it masked."""
    if "://" not in value:
        return value
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}@", value)


def mask_env(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of `env` safe to print."""
    return {k: (MASK if is_secret(k) else mask_value(v)) for k, v in env.items()}


def _secret_option(word: str) -> tuple[str, bool] | None:
    """For `--name=value` or `NAME=value` with a secret name, the masked word and False; for a
    bare `--name` with a secret name, the word and True (its value is the next word)."""
    if word.startswith("-") and len(word) > 2:
        name, sep, _value = word.lstrip("-").partition("=")
        if not is_secret(name):
            return None
        return (f"{word[: word.index('=')]}={MASK}", False) if sep else (word, True)
    match = _ASSIGNMENT.fullmatch(word)
    if match and is_secret(match.group(1)):
        return f"{match.group(1)}={MASK}", False
    return None


def mask_args(words: Sequence[str]) -> list[str]:
    """Command-line words safe to print: secret options' values and URL passwords masked."""
    out: list[str] = []
    value_next = False
    for word in words:
        if value_next and not word.startswith("-"):
            out.append(MASK)
            value_next = False
            continue
        option = _secret_option(word)
        if option is None:  # a word with spaces is a command line itself (`sh -c '...'`)
            out.append(mask_command(word) if " " in word else mask_value(word))
            value_next = False
        else:
            out.append(option[0])
            value_next = option[1]
    return out


def _quoted(word: str) -> str:
    """`shlex.quote`, but a mask stays bare (`--token=****`, not `'--token=****'`)."""
    plain = word.replace(MASK, "_")
    return word if shlex.quote(plain) == plain else shlex.quote(word)


def join_masked(words: Sequence[str]) -> str:
    """Command-line words as one shell line, safe to print (`shlex.join` of `mask_args`)."""
    return " ".join(_quoted(word) for word in mask_args(words))


def mask_command(text: str) -> str:
    """A command line (a Procfile line, a `script` with spaces) safe to print."""
    try:
        words = shlex.split(text)
    except ValueError:
        return mask_value(text)
    return text if mask_args(words) == words else join_masked(words)
