"""Configured names follow PostgreSQL's identifier rules, so they mean what psql means."""

from __future__ import annotations

import pytest

from ruvectord.config import CollectionConfig
from ruvectord.identifiers import parse_name, quote


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("public.items", ("public", "items")),
        ("public.Items", ("public", "items")),  # unquoted folds, as in psql
        ('public."Items"', ("public", "Items")),
        ('"My Schema"."My Table"', ("My Schema", "My Table")),
        ('public."say ""hi"""', ("public", 'say "hi"')),
        ("public.größe", ("public", "größe")),  # non-ASCII letters need no quotes, nor fold
        (' public . "Vectors" ', ("public", "Vectors")),
        ("items", ("items",)),
    ],
)
def test_names_are_read_as_postgresql_reads_them(text: str, parts: tuple[str, ...]) -> None:
    assert parse_name(text, parts=2) == parts


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("public.items.extra", "not a name of the form schema.table"),
        ('public."Items', "unterminated quoted identifier"),
        ('public.""', "empty quoted identifier"),
        ("public.1items", "is not an identifier"),
        ("public.my table", "not a name of the form schema.table"),
        ("public." + "x" * 64, "longer than 63 bytes"),
    ],
)
def test_malformed_names_are_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_name(text, parts=2)


def test_the_collection_keeps_the_canonical_spelling_and_the_catalog_names() -> None:
    c = CollectionConfig(name="c", table='public."Items"', vector_column='"Embedding"')
    assert c.table == 'public."Items"'
    assert (c.schema_name, c.table_name, c.vector_attname) == ("public", "Items", "Embedding")
    folded = CollectionConfig(name="c", table="Public.Items", vector_column="Embedding")
    assert (folded.table, folded.table_name, folded.vector_attname) == (
        "public.items",
        "items",
        "embedding",
    )
    assert CollectionConfig(name="c", table="items", vector_column="v").table == "public.items"
    assert quote('a"b') == '"a""b"' and quote("plain_1") == "plain_1"
