"""Structured logging: JSON lines by default, a console renderer on a TTY, secrets never shown.

Timestamps are UTC ISO-8601 and event names snake_case verbs in the past tense. Every line,
ours or a library's (stdlib `logging`: asyncpg, asyncio, kubernetes), passes through one chain
that turns exceptions into plain text (never a traceback with local variables, which would
print `ConnectOptions.password`) and then through one redaction step, `redact`, before either
renderer sees it. `redact` removes passwords from connection strings and every literal secret
registered with `register_secret` (the daemon registers the password it reads from
`database.password_file` and any password inside the DSN).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO
from urllib.parse import quote, unquote, urlsplit

import structlog

MASK = "***"
# user:password@ in any URI (postgresql://, postgres://, ...); the password may hold '@'
_URI_PASSWORD = re.compile(
    r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<pw>[^\s/]*)@", re.I
)
# password=..., passwd: ..., 'password': '...', PGPASSWORD=... (quoted or up to whitespace)
_KW_PASSWORD = re.compile(
    r"""(?P<key>passw(?:or)?d['"]?\s*[=:]\s*)"""
    r"""(?P<pw>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s&,;)}\]]+)""",
    re.I,
)
# Shorter values are left alone: masking every "ab" in every line would hide the logs and
# protect nothing (a two-character password is guessed faster than it is read).
MIN_SECRET_LENGTH = 4

_secrets: set[str] = set()
_secrets_re: re.Pattern[str] | None = None
_secrets_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Mask `value` (and its URL-, JSON- and repr-escaped forms) wherever it appears."""
    global _secrets_re
    if not value or len(value) < MIN_SECRET_LENGTH:
        return
    forms = {value, quote(value, safe=""), json.dumps(value)[1:-1], repr(value)[1:-1]}
    with _secrets_lock:
        if forms <= _secrets:
            return
        _secrets.update(f for f in forms if len(f) >= MIN_SECRET_LENGTH)
        # longest first, so a secret that contains another is masked whole
        alternatives = sorted(_secrets, key=len, reverse=True)
        _secrets_re = re.compile("|".join(re.escape(s) for s in alternatives))


def register_dsn_secrets(dsn: str | None) -> None:
    """Register the password a connection URI carries, in the userinfo or as ?password=."""
    if not dsn:
        return
    try:
        parts = urlsplit(dsn)
        if parts.password:
            register_secret(parts.password)
            register_secret(unquote(parts.password))
    except ValueError:
        pass
    for match in re.finditer(r"[?&]password=([^&\s]+)", dsn, re.I):
        register_secret(match.group(1))
        register_secret(unquote(match.group(1)))


def redact(text: str) -> str:
    """`text` without passwords: connection-string passwords and every registered secret."""
    pattern = _secrets_re
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _URI_PASSWORD.sub(rf"\g<scheme>\g<user>:{MASK}@", text)
    return _KW_PASSWORD.sub(rf"\g<key>{MASK}", text)


def _scrub(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v) for v in value]
    # anything else would be rendered by repr() after this step: render it here instead
    return redact(str(value))


def redact_event(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The one redaction step: every value of every line, exception text included."""
    for key in list(event):
        event[key] = _scrub(event[key])
    return event


def _stdlib_logger_name(
    _: Any, __: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    record = event.get("_record")
    if record is not None:
        event.setdefault("logger", record.name)
    return event


def setup_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog and the stdlib root logger (for libraries), once per process."""
    stream = stream or sys.stdout
    tty = stream.isatty()
    console = fmt == "console" or (fmt == "auto" and tty)
    numeric = logging.getLevelNamesMapping()[level.upper()]
    before: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        # plain text, no local variables: formatted here so that redaction sees it
        structlog.processors.format_exc_info,
    ]
    renderer: Any
    if console:
        renderer = structlog.dev.ConsoleRenderer(
            colors=tty, exception_formatter=structlog.dev.plain_traceback
        )
    else:
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    structlog.configure(
        processors=[*before, redact_event, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # Libraries log through stdlib: same chain, same stream; warnings and above only.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*before, _stdlib_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact_event,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.WARNING))
    logging.captureWarnings(True)


def get_logger(name: str | None = None, **bound: Any) -> Any:
    logger = structlog.get_logger(name) if name else structlog.get_logger()
    return logger.bind(**bound) if bound else logger
