"""What a tenant may ask of the engine is bounded at the API: delays, a run's max_time, a
schedule_at, a provider's timeout, a channel's rate. Out of bounds is a 422 naming the
field, never a saved value that later fails (or overflows) inside the worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import Api, assert_error, make_channel, make_sequence


def _steps_path(api: Api) -> str:
    sequence = make_sequence(api, [], status="draft")
    return f"/v1/sequences/{sequence['id']}/steps"


@pytest.mark.parametrize(
    "delay",
    [{"days": 3_000_000}, {"days": 3650, "minutes": 1}, {"hours": 87_601}, {"minutes": 10**9}],
)
def test_a_step_delay_past_ten_years_is_refused(api: Api, delay: dict[str, int]) -> None:
    response = api.post(_steps_path(api), json={"title": "Later", "schedule_options": delay})
    [error] = assert_error(response, 422, "schedule_options")
    assert "10 years" in error["description"]


def test_a_step_delay_of_ten_years_is_accepted(api: Api) -> None:
    path = _steps_path(api)
    response = api.post(path, json={"title": "Later", "schedule_options": {"days": 3650}})
    assert response.status_code == 201, response.text
    assert response.json()["data"]["schedule_options"]["days"] == 3650
    step_path = f"{path}/{response.json()['data']['id']}"
    changed = api.put(step_path, json={"schedule_options": {"days": 4000}})
    assert_error(changed, 422, "schedule_options")


@pytest.mark.parametrize("key", ["max_time", "max_add_time"])
def test_run_time_settings_past_ten_years_are_refused(api: Api, key: str) -> None:
    sequence = make_sequence(api, [], status="draft")
    path = f"/v1/sequences/{sequence['id']}"
    assert_error(api.put(path, json={"settings": {key: 10**12}}), 422, f"settings.{key}")
    ten_years = 3650 * 86400
    response = api.put(path, json={"settings": {key: ten_years}})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["settings"][key] == ten_years


@pytest.mark.parametrize("schedule_at", ["9999-12-31T23:59:59Z", "2045-01-01T00:00:00Z"])
def test_a_schedule_at_past_ten_years_ahead_is_refused_before_any_job(
    api: Api, schedule_at: str
) -> None:
    sequence = make_sequence(api)
    response = api.post(
        f"/v1/sequences/{sequence['id']}/contacts",
        json={"to": [{"phone": "+14155550111"}], "schedule_at": schedule_at},
    )
    assert_error(response, 422, "schedule_at")
    nine_years = (datetime.now(UTC) + timedelta(days=9 * 365)).strftime("%Y-%m-%dT%H:%M:%SZ")
    accepted = api.post(
        f"/v1/sequences/{sequence['id']}/contacts",
        json={"to": [{"phone": "+14155550111"}], "schedule_at": nine_years},
    )
    assert accepted.status_code == 202, accepted.text


def test_a_provider_timeout_above_the_operators_cap_is_refused(api: Api) -> None:
    # The tests' settings keep the default cap, 30 s.
    config = {"url": "https://gateway.example.com/hook", "secret": "s3cret", "timeout": 1e9}
    response = api.post(
        "/v1/channels",
        json={
            "name": "G",
            "type": "sms",
            "address": "+14155550100",
            "provider": "webhook",
            "provider_config": config,
        },
    )
    [error] = assert_error(response, 422, "provider_config.timeout")
    assert "30" in error["description"]
    channel = make_channel(api, provider="webhook", provider_config={**config, "timeout": 30})
    assert channel["provider_config"]["timeout"] == 30
    response = api.put(f"/v1/channels/{channel['id']}", json={"provider_config": {"timeout": 31}})
    assert_error(response, 422, "provider_config.timeout")


@pytest.mark.parametrize("rate", [0, -1, "fast", 10_001])
def test_a_channel_rate_must_be_a_positive_number(api: Api, rate: object) -> None:
    response = api.post(
        "/v1/channels",
        json={"name": "S", "type": "sms", "address": "+14155550100", "max_per_second": rate},
    )
    assert_error(response, 422, "max_per_second")


def test_a_channel_rate_is_kept_changed_and_cleared(api: Api) -> None:
    channel = make_channel(api, max_per_second=2.5)
    assert channel["max_per_second"] == 2.5
    path = f"/v1/channels/{channel['id']}"
    assert api.put(path, json={"name": "Renamed"}).json()["data"]["max_per_second"] == 2.5
    assert api.put(path, json={"max_per_second": 20}).json()["data"]["max_per_second"] == 20
    assert api.put(path, json={"max_per_second": None}).json()["data"]["max_per_second"] is None
    assert api.get(path).json()["data"]["max_per_second"] is None
