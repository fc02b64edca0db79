"""Postgres URLs: `redact` (the one function every shown or logged URL goes through) never returns a
password, however the URL is written, and a URL asyncpg could not use is refused in words that
quote none of it."""

from __future__ import annotations

import pytest

from incentives.adapters import db, urls
from incentives.adapters.urls import UNREADABLE, database_url_problem, redact

SECRET = "S3cret-9f2"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql://owner:{SECRET}@db.internal:5432/incentives", "postgresql://owner@db.internal:5432/incentives"),
        (f"postgres://owner:{SECRET}@/incentives?host=/run/pg", "postgres://owner@/incentives?host=/run/pg"),
        (f"postgresql://owner@h/db?password={SECRET}&sslmode=require", "postgresql://owner@h/db?sslmode=require"),
        (f"postgresql://owner@h/db?sslmode=require&PassWord={SECRET}", "postgresql://owner@h/db?sslmode=require"),
        (f"postgresql://owner@h/db?pass%77ord={SECRET}", "postgresql://owner@h/db"),
        (f"postgresql://owner@h/db?sslpassword={SECRET}", "postgresql://owner@h/db"),
        (f"postgresql://owner:{SECRET}@h1:5432,[::1]:5433/db#{SECRET}", "postgresql://owner@h1:5432,[::1]:5433/db"),
        (f"postgresql://:{SECRET}@h/db", "postgresql://h/db"),
        ("postgresql://nobody@127.0.0.1:1/nothing", "postgresql://nobody@127.0.0.1:1/nothing"),
    ],
)
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert redact(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        f"host=db.internal user=owner password={SECRET}",  # libpq's keyword form: not a URL
        f"owner:{SECRET}@db.internal/incentives",  # no scheme
        f"postgresql://owner:{SECRET}/incentives",  # no '@': urllib reads the password as a port
        f"postgresql://owner:pa/{SECRET}@db.internal/incentives",  # an unencoded '/' in the password
        f"postgresql://owner:pa?{SECRET}@db.internal/incentives",  # an unencoded '?'
        f"postgresql://owner:pa#{SECRET}@db.internal/incentives",  # an unencoded '#'
        f"postgresql://owner:{SECRET}@[::1:1/db",  # a broken IPv6 address
    ],
)
def test_a_url_that_cannot_be_taken_apart_is_not_shown_at_all(url: str) -> None:
    assert redact(url) == UNREADABLE
    assert SECRET not in db.redact(url)


def test_the_database_module_shows_urls_with_the_same_function() -> None:
    assert db.redact is urls.redact


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (f"mysql://u:{SECRET}@h/db", "is not a postgresql:// or postgres:// URL"),
        (f"host=h password={SECRET}", "is not a postgresql:// or postgres:// URL"),
        (f"postgresql://u:{SECRET}@[::1:1/db", "malformed host or port"),
        (f"postgresql://u:{SECRET}@h:70000/db", "malformed host or port"),
        (f"postgresql://u:{SECRET}/db", "malformed host or port"),
        (f"postgresql://u:{SECRET}@h,,h2/db", "malformed host or port"),
        (f"postgresql://u:a@{SECRET}@h/db", "more than one '@'"),
        (f"postgresql://u:a/{SECRET}@h/db", "has an '@' after its host"),
        (f"postgresql://u:{SECRET}@h/db?sslmode", "malformed query"),
        (f"postgresql://u:{SECRET}@h/db?port=x", "malformed port parameter"),
    ],
)
def test_a_url_asyncpg_could_not_use_is_refused_without_quoting_it(url: str, why: str) -> None:
    problem = database_url_problem(url)
    assert problem is not None
    assert why in problem
    assert SECRET not in problem


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://owner:pw@db.internal:5432/incentives",
        "postgres://owner@/incentives?host=/tmp/pg data",
        "postgresql://u@h1:5432,h2:5433/db?sslmode=require&port=5432,5433",
        "postgresql://u@[fe80::1%25eth0]:5432/db",
        "postgresql:///incentives",
    ],
)
def test_a_url_asyncpg_can_use_passes(url: str) -> None:
    assert database_url_problem(url) is None
