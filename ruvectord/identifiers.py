"""SQL identifiers in configuration, read by PostgreSQL's own rules.

`table: public.Items` names the same table as `SELECT * FROM public.Items` does in psql:
unquoted parts fold to lower case; a part in double quotes keeps its case, spaces and any
character (write `""` for a quote inside). So `public."Items"` is the table created as
"Items", and an unquoted name can never silently point somewhere a quoted one would not.
Pure: no database needed, so `check-config` can refuse a malformed name offline.
"""

from __future__ import annotations

import re

NAMEDATALEN = 64  # PostgreSQL truncates identifiers to 63 bytes; we refuse longer ones
_UNQUOTED = re.compile(r"[A-Za-z_\x80-\U0010FFFF][A-Za-z0-9_$\x80-\U0010FFFF]*")
_PLAIN = re.compile(r"[a-z_][a-z0-9_$]*")


def parse_name(text: str, *, parts: int) -> tuple[str, ...]:
    """Split `text` into at most `parts` dot-separated identifiers, folded or unquoted.

    Raises ValueError naming what is wrong.
    """
    out: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i < n and text[i] == '"':
            j, ident = i + 1, []
            while True:
                k = text.find('"', j)
                if k < 0:
                    raise ValueError(f"{text!r}: unterminated quoted identifier")
                ident.append(text[j:k])
                if text[k + 1 : k + 2] == '"':  # "" inside quotes is one quote
                    ident.append('"')
                    j = k + 2
                    continue
                i = k + 1
                break
            name = "".join(ident)
            if not name:
                raise ValueError(f"{text!r}: an empty quoted identifier")
        else:
            m = _UNQUOTED.match(text, i)
            if m is None:
                raise ValueError(
                    f"{text!r} is not an identifier (quote names with capitals, spaces or "
                    'other characters: "My Table")'
                )
            name = _fold(m.group())
            i = m.end()
        if len(name.encode()) >= NAMEDATALEN:
            raise ValueError(f"{text!r}: identifier {name!r} is longer than 63 bytes")
        out.append(name)
        while i < n and text[i].isspace():
            i += 1
        if i == n:
            break
        if text[i] != "." or len(out) == parts:
            raise ValueError(
                f"{text!r} is not a name of the form "
                + ("schema.table" if parts == 2 else "one identifier")
            )
        i += 1
    return tuple(out)


def _fold(name: str) -> str:
    # PostgreSQL folds only ASCII letters in unquoted identifiers (in a UTF-8 database)
    return "".join(c.lower() if "A" <= c <= "Z" else c for c in name)


def quote(name: str) -> str:
    """The identifier as SQL would need it written: quoted unless plainly lower case."""
    if _PLAIN.fullmatch(name):
        return name
    return '"' + name.replace('"', '""') + '"'
