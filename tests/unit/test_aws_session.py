"""The container's botocore session (teams_connect.adapters.aws) and TLS context (adapters.tls)."""

from __future__ import annotations

import os
from pathlib import Path

import botocore.loaders
import pytest

from teams_connect.adapters import aws, tls


@pytest.fixture
def loaders(tmp_path: Path) -> tuple[aws.DataLoader, botocore.loaders.Loader, Path]:
    extra = tmp_path / "models"
    (extra / "madeup" / "2030-01-01").mkdir(parents=True)
    (extra / "madeup" / "2030-01-01" / "service-2.json").write_text("{}", encoding="utf-8")
    (extra / "empty" / "2030-01-01").mkdir(parents=True)  # a directory without that data type
    return aws.DataLoader(extra_search_paths=[str(extra)]), botocore.loaders.Loader([str(extra)]), extra


def test_the_loader_knows_exactly_the_services_botocore_lists(
    loaders: tuple[aws.DataLoader, botocore.loaders.Loader, Path],
) -> None:
    ours, botocores, _ = loaders
    for type_name in ("service-2", "endpoint-rule-set-1", "paginators-1"):
        listed = set(botocores.list_available_services(type_name))
        answered = ours.list_available_services(type_name)
        assert {"dynamodb", "secretsmanager", "events", "sqs"} <= listed
        for name in [*sorted(listed)[::7], "dynamodb", "secretsmanager", "madeup"]:
            assert (name in answered) == (name in listed), (type_name, name)
        assert sorted(answered) == sorted(listed)  # iterating lists them all, as botocore does
        assert len(answered) == len(listed)
    assert "madeup" in ours.list_available_services("service-2")  # AWS_DATA_PATH-style extra path
    assert "madeup" not in ours.list_available_services("paginators-1")


@pytest.mark.parametrize("name", ["empty", "nosuchservice", "", "..", f"..{os.sep}models", "a/b", 3])
def test_the_loader_refuses_what_is_not_a_service(
    loaders: tuple[aws.DataLoader, botocore.loaders.Loader, Path], name: object
) -> None:
    ours, _, _ = loaders
    assert name not in ours.list_available_services("service-2")


def test_the_session_creates_clients_and_refuses_an_unknown_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aws, "_session", None)
    session = aws.session()
    assert isinstance(session.get_component("data_loader"), aws.DataLoader)
    client = session.create_client("dynamodb", region_name="eu-west-1")
    assert client.meta.service_model.service_name == "dynamodb"
    with pytest.raises(Exception, match="Unknown service: 'nosuchservice'"):
        session.create_client("nosuchservice", region_name="eu-west-1")


def test_every_http_client_uses_the_containers_one_tls_context() -> None:
    from teams_connect.adapters.app_webhooks import HttpSender
    from teams_connect.adapters.microsoft import MicrosoftIdentity
    from teams_connect.adapters.nylas.http import NylasHttp

    context = tls.context()
    assert tls.context() is context
    clients = [
        NylasHttp("https://api.us.nylas.com")._client,
        MicrosoftIdentity("https://login.microsoftonline.com").client,
        HttpSender()._client,
    ]
    for client in clients:
        assert client._transport._pool._ssl_context is context  # type: ignore[attr-defined]
