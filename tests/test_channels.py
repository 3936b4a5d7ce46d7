"""Channels (SPEC 4.3): address by type, providers and their configs, write-only secrets."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.helpers import Api, assert_error, make_channel

SMTP = {
    "host": "smtp.example.com",
    "port": 465,
    "username": "mailer",
    "password": "hunter2",
    "ssl": True,
}
TWILIO = {"account_sid": "AC123", "auth_token": "twilio-secret"}
WEBHOOK = {"url": "https://hooks.example.com/send", "secret": "webhook-secret"}
SECRETS = ("hunter2", "twilio-secret", "webhook-secret", "new-secret")


def attempt(api: Api, **fields: Any) -> httpx.Response:
    return api.post("/v1/channels", json={"name": "Channel", "type": "sms", **fields})


def create(api: Api, **fields: Any) -> dict[str, Any]:
    response = attempt(api, **{"address": "+14155550100", **fields})
    assert response.status_code == 201, response.text
    return dict(response.json()["data"])


def put(api: Api, channel_id: str, **fields: Any) -> dict[str, Any]:
    response = api.put(f"/v1/channels/{channel_id}", json=fields)
    assert response.status_code == 200, response.text
    assert not any(secret in response.text for secret in SECRETS), response.text
    return dict(response.json()["data"])


def read_back(api: Api, channel_id: str) -> dict[str, Any]:
    """The channel as GET and list show it; neither may leak a secret."""
    one = api.get(f"/v1/channels/{channel_id}")
    assert one.status_code == 200, one.text
    every = api.get("/v1/channels")
    for response in (one, every):
        assert not any(secret in response.text for secret in SECRETS), response.text
    listed = [c for c in every.json()["data"] if c["id"] == channel_id]
    assert listed == [one.json()["data"]]
    return dict(one.json()["data"])


def test_create_sms_channel_with_defaults(api: Api) -> None:
    channel = create(api, name="Front desk", address="+1 (415) 555-0100")
    assert uuid.UUID(channel["id"])
    assert {k: v for k, v in channel.items() if k not in ("id", "created_at", "updated_at")} == {
        "name": "Front desk",
        "type": "sms",
        "address": "+14155550100",
        "provider": "outbox",
        "provider_config": {},
        "timezone": None,
        "opening_hours": None,
        "max_per_second": None,
    }
    assert channel["created_at"].endswith("Z")
    assert read_back(api, channel["id"]) == channel


def test_create_email_channel(api: Api) -> None:
    channel = create(
        api,
        type="email",
        address="team@example.com",
        timezone="Europe/Berlin",
        opening_hours={
            "mon": [["09:00", "12:00"], ["13:00", "17:00"]],
            "sat": [["10:00", "24:00"]],
        },
    )
    assert (channel["type"], channel["address"]) == ("email", "team@example.com")
    assert channel["timezone"] == "Europe/Berlin"
    assert channel["opening_hours"] == {
        "mon": [["09:00", "12:00"], ["13:00", "17:00"]],
        "sat": [["10:00", "24:00"]],
    }


@pytest.mark.parametrize(
    ("channel_type", "address"),
    [
        ("sms", "team@example.com"),
        ("sms", "555-0100"),
        ("email", "+14155550100"),
        ("email", "team@"),
    ],
)
def test_address_must_fit_the_type(api: Api, channel_type: str, address: str) -> None:
    assert_error(attempt(api, type=channel_type, address=address), 422, "address")


def test_missing_and_bad_fields_are_all_listed(api: Api) -> None:
    response = api.post(
        "/v1/channels",
        json={"type": "fax", "provider": "pigeon", "timezone": "Atlantis/Capital"},
    )
    assert_error(response, 422, "name", "address", "type", "provider", "timezone")
    assert api.get("/v1/channels").json()["total"] == 0


def test_address_is_validated_on_update(api: Api) -> None:
    channel = create(api)
    response = api.put(f"/v1/channels/{channel['id']}", json={"address": "team@example.com"})
    assert_error(response, 422, "address")
    assert put(api, channel["id"], address="+1 415 555 0199")["address"] == "+14155550199"


@pytest.mark.parametrize(
    ("provider", "config", "fields"),
    [
        ("smtp", {}, ["provider_config.host"]),
        ("smtp", {"host": "smtp.example.com", "port": 70000}, ["provider_config.port"]),
        ("smtp", {"host": "smtp.example.com", "port": "smtp"}, ["provider_config.port"]),
        # Both TLS modes at once is one error about the config as a whole.
        ("smtp", {"host": "smtp.example.com", "ssl": True, "starttls": True}, ["provider_config"]),
        ("twilio", {}, ["provider_config.account_sid", "provider_config.auth_token"]),
        ("twilio", {**TWILIO, "base_url": "ftp://twilio"}, ["provider_config.base_url"]),
        ("twilio", {**TWILIO, "status_callback": "maybe"}, ["provider_config.status_callback"]),
        ("webhook", {"url": "not a url", "secret": "s"}, ["provider_config.url"]),
        ("webhook", {"url": "https://hooks.example.com"}, ["provider_config.secret"]),
    ],
)
def test_provider_config_is_validated(
    api: Api, provider: str, config: dict[str, Any], fields: list[str]
) -> None:
    response = api.post(
        "/v1/channels",
        json={
            "name": "x",
            "type": "email",
            "address": "a@example.com",
            "provider": provider,
            "provider_config": config,
        },
    )
    assert_error(response, 422, *fields)
    assert api.get("/v1/channels").json()["total"] == 0


def test_provider_config_defaults_are_filled_in(api: Api) -> None:
    twilio = create(api, provider="twilio", provider_config=TWILIO)
    assert twilio["provider_config"]["account_sid"] == "AC123"
    assert twilio["provider_config"]["base_url"] == "https://api.twilio.com"
    assert twilio["provider_config"]["status_callback"] is False
    assert "auth_token" not in twilio["provider_config"]


@pytest.mark.parametrize(
    ("provider", "config", "secret_key", "change"),
    [
        ("smtp", SMTP, "password", {"host": "mail.example.org"}),
        ("twilio", TWILIO, "auth_token", {"account_sid": "AC999", "status_callback": True}),
        ("webhook", WEBHOOK, "secret", {"url": "https://hooks.example.com/v2"}),
    ],
)
def test_secrets_are_write_only_and_kept_when_a_put_omits_them(
    api: Api, provider: str, config: dict[str, Any], secret_key: str, change: dict[str, Any]
) -> None:
    channel = create(
        api, type="email", address="a@example.com", provider=provider, provider_config=config
    )
    assert secret_key not in channel["provider_config"]
    assert not any(secret in str(channel) for secret in SECRETS)
    public = {k: v for k, v in config.items() if k != secret_key}
    assert public.items() <= channel["provider_config"].items()
    assert read_back(api, channel["id"]) == channel

    # A client that round-trips what it read never has the secret to send back. For twilio
    # and webhook the secret is required, so this PUT passes only if the old one is kept.
    updated = put(api, channel["id"], provider_config={**channel["provider_config"], **change})
    assert secret_key not in updated["provider_config"]
    assert {**public, **change}.items() <= updated["provider_config"].items()
    assert read_back(api, channel["id"]) == updated

    # A new secret may be written; it is not shown either.
    rotated = put(api, channel["id"], provider_config={secret_key: "new-secret"})
    assert {**public, **change}.items() <= rotated["provider_config"].items()

    # Changes outside provider_config leave the config alone.
    renamed = put(api, channel["id"], name="Renamed")
    assert renamed["provider_config"] == rotated["provider_config"]
    assert renamed["provider"] == provider


def test_switching_provider_does_not_carry_old_secrets(api: Api) -> None:
    channel = create(api, provider="twilio", provider_config=TWILIO)
    # A webhook needs its own secret; twilio's auth_token must not stand in for it.
    response = api.put(
        f"/v1/channels/{channel['id']}",
        json={"provider": "webhook", "provider_config": {"url": "https://hooks.example.com"}},
    )
    assert_error(response, 422, "provider_config.secret")
    assert read_back(api, channel["id"]) == channel
    updated = put(api, channel["id"], provider="webhook", provider_config=WEBHOOK)
    assert updated["provider"] == "webhook"
    assert updated["provider_config"]["url"] == WEBHOOK["url"]
    assert "account_sid" not in updated["provider_config"]
    back = put(api, channel["id"], provider="outbox")
    assert (back["provider"], back["provider_config"]) == ("outbox", {})


def test_bad_config_on_update_changes_nothing(api: Api) -> None:
    channel = create(
        api, type="email", address="a@example.com", provider="smtp", provider_config=SMTP
    )
    response = api.put(f"/v1/channels/{channel['id']}", json={"provider_config": {"port": 0}})
    assert_error(response, 422, "provider_config.port")
    assert read_back(api, channel["id"]) == channel


@pytest.mark.parametrize(
    ("hours", "field"),
    [
        ({"funday": [["09:00", "17:00"]]}, "opening_hours"),
        ({"mon": [["9am", "17:00"]]}, "opening_hours"),
        ({"mon": [["09:00", "25:00"]]}, "opening_hours"),
        ({"mon": [["17:00", "09:00"]]}, "opening_hours"),
        ({"mon": [["09:00"]]}, "opening_hours"),
        ({"mon": "09:00-17:00"}, "opening_hours.mon"),
    ],
)
def test_opening_hours_are_validated(api: Api, hours: dict[str, Any], field: str) -> None:
    assert_error(attempt(api, address="+14155550100", opening_hours=hours), 422, field)
    channel = create(api)
    response = api.put(f"/v1/channels/{channel['id']}", json={"opening_hours": hours})
    assert_error(response, 422, field)
    assert read_back(api, channel["id"])["opening_hours"] is None


def test_timezone_and_opening_hours_update_and_clear(api: Api) -> None:
    channel = create(api)
    assert_error(
        api.put(f"/v1/channels/{channel['id']}", json={"timezone": "Mars/Olympus"}),
        422,
        "timezone",
    )
    hours = {"fri": [["08:30", "16:00"]]}
    updated = put(api, channel["id"], timezone="Asia/Tokyo", opening_hours=hours)
    assert (updated["timezone"], updated["opening_hours"]) == ("Asia/Tokyo", hours)
    assert read_back(api, channel["id"]) == updated
    cleared = put(api, channel["id"], timezone=None, opening_hours=None)
    assert (cleared["timezone"], cleared["opening_hours"]) == (None, None)


def test_list_pages_and_filters_by_type(api: Api) -> None:
    sms = [create(api, name=f"SMS {i}", address=f"+1415555010{i}") for i in range(3)]
    mail = create(api, name="Mail", type="email", address="team@example.com")

    def page(**params: Any) -> dict[str, Any]:
        response = api.get("/v1/channels", params=params)
        assert response.status_code == 200, response.text
        return dict(response.json())

    everything = page()
    assert everything["total"] == 4
    assert {c["id"] for c in everything["data"]} == {c["id"] for c in [*sms, mail]}
    only_sms = page(type="sms")
    assert only_sms["total"] == 3
    assert {c["id"] for c in only_sms["data"]} == {c["id"] for c in sms}
    assert [c["id"] for c in page(type="email")["data"]] == [mail["id"]]
    first, second = page(limit=2), page(limit=2, offset=2)
    assert (len(first["data"]), len(second["data"]), first["total"]) == (2, 2, 4)
    assert {c["id"] for c in first["data"] + second["data"]} == {c["id"] for c in [*sms, mail]}
    assert page(type="")["total"] == 4
    assert_error(api.get("/v1/channels", params={"type": "fax"}), 422, "type")
    assert_error(api.get("/v1/channels", params={"limit": 501}), 422, "limit")


def test_unknown_channel_is_404(api: Api) -> None:
    make_channel(api)
    missing = uuid.uuid4()
    assert_error(api.get(f"/v1/channels/{missing}"), 404)
    assert_error(api.put(f"/v1/channels/{missing}", json={"name": "x"}), 404)
    assert_error(api.get("/v1/channels/not-a-uuid"), 422, "channel_id")
