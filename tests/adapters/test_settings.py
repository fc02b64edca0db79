"""Settings: a malformed one is refused naming the environment variable (or the flag that set it),
and `--address` / `--namespace` override the Temporal configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from incentives.adapters.endpoints import endpoints
from incentives.adapters.settings import load_settings
from incentives.domain.errors import InvalidInput


@pytest.mark.parametrize(
    ("variable", "value", "named", "why"),
    [
        ("INCENTIVES_TEMPORAL_PORT", "abc", "INCENTIVES_TEMPORAL_PORT", "valid integer"),
        ("INCENTIVES_TEMPORAL_UI_PORT", "0", "INCENTIVES_TEMPORAL_UI_PORT", "greater than or equal to 1"),
        ("INCENTIVES_LOG_LEVEL", "bogus", "INCENTIVES_LOG_LEVEL", "is not a log level"),
        ("INCENTIVES_DB_POOL_MAX", "0", "INCENTIVES_DB_POOL_MAX", "greater than or equal to 1"),
        ("TEMPORAL_ADDRESS", "localhost", "TEMPORAL_ADDRESS", "is not HOST:PORT"),
        ("TEMPORAL_NAMESPACE", "a b", "TEMPORAL_NAMESPACE", "is not a namespace name"),
        ("DATABASE_URL", "", "DATABASE_URL", "is empty"),
    ],
)
def test_a_malformed_variable_is_named(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str, why: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidInput, match=why) as raised:
        load_settings()
    assert raised.value.field == named


@pytest.mark.parametrize("variable", ["DATABASE_URL", "INCENTIVES_WORKER_DATABASE_URL"])
@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("postgresql://u:S3cret@[::1:1/db", "has a malformed host or port"),
        ("mysql://u:S3cret@h/db", "is not a postgresql:// or postgres:// URL"),
        ("postgresql://u:S3cret/db", "has a malformed host or port"),
    ],
)
def test_a_malformed_database_url_is_named_and_its_password_is_not_quoted(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, why: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidInput, match=why) as raised:
        load_settings()
    assert raised.value.field == variable
    assert "S3cret" not in str(raised.value)


def test_a_database_url_of_the_wrong_type_is_not_quoted() -> None:
    """pydantic's own refusals are followed by the value they refused, but never a URL's."""
    with pytest.raises(InvalidInput, match="valid string") as raised:
        load_settings(database_url=["postgresql://u:S3cret@h/db"])
    assert "S3cret" not in str(raised.value)


def test_a_malformed_override_is_named_by_its_own_name() -> None:
    with pytest.raises(InvalidInput) as raised:
        load_settings(temporal_address="127.0.0.1:99999")
    assert raised.value.field == "temporal_address"


def test_address_and_namespace_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "env.example:7233")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "from-env")
    where = endpoints(load_settings(temporal_address="flag.example:7234", temporal_namespace="from-flag"))
    assert (where.temporal_address, where.namespace, where.embedded_temporal) == (
        "flag.example:7234",
        "from-flag",
        False,
    )
    where = endpoints(load_settings())
    assert (where.temporal_address, where.namespace) == ("env.example:7233", "from-env")


def test_the_embedded_server_port_when_nothing_names_an_address(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("TEMPORAL_ADDRESS", raising=False)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "none.toml"))
    monkeypatch.setenv("INCENTIVES_TEMPORAL_PORT", "17999")
    where = endpoints(load_settings())
    assert (where.temporal_address, where.embedded_temporal) == ("127.0.0.1:17999", True)


def test_a_malformed_temporal_config_file_is_an_input_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "temporal.toml"
    config.write_text("not [ toml")
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(config))
    with pytest.raises(InvalidInput, match="TOML parse error") as raised:
        endpoints(load_settings())
    assert raised.value.field == "TEMPORAL_CONFIG_FILE / TEMPORAL_PROFILE"
