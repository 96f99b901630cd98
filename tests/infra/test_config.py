"""Campaign configuration: good files load exactly, bad ones say what is wrong."""

import pytest

from infra.config import ConfigError, load_campaigns, parse_campaigns
from tests.factories import ROOT

GOOD = {
    "id": "paris", "number": "+33 644 630 001", "reply_text": "Non c'est non.",
    "language": "fr", "budget_eur": "3700.00", "price_per_segment_eur": 0.08,
}


def table(**kw):
    import datetime as dt
    return {**GOOD, "start": dt.date(2017, 10, 16), "end": dt.date(2018, 10, 15), **kw}


def test_the_example_config_loads_at_least_two_cities():
    campaigns = load_campaigns(ROOT / "infra" / "campaigns.example.toml")
    assert len(campaigns) >= 2
    assert len({c.number for c in campaigns}) == len(campaigns)


def test_money_is_exact_and_dates_cover_whole_days():
    (c,) = parse_campaigns({"campaign": [table()]})
    assert (c.budget_micros, c.price_per_segment_micros) == (3_700_000_000, 80_000)
    assert (c.number, c.country, c.originator, c.cooldown_ms) == (
        "33644630001", "FR", "33644630001", None)
    assert c.ends_at - c.starts_at == 365 * 86_400_000


@pytest.mark.parametrize("change, message", [
    ({"number": "hello"}, "'number'"),
    ({"budget_eur": "lots"}, "'budget_eur'"),
    ({"price_per_segment_eur": 0}, "positive"),
    ({"reply_text": ""}, "'reply_text'"),
    ({"colour": "red"}, "unknown key .colour. .did you mean .country..."),
    ({"cooldown_days": -1}, "cooldown_days"),
])
def test_a_bad_campaign_is_named_with_the_reason(change, message):
    with pytest.raises(ConfigError, match=message) as err:
        parse_campaigns({"campaign": [table(**change)]})
    assert "paris" in str(err.value) or "#1" in str(err.value)


def test_two_campaigns_on_one_number_are_refused():
    with pytest.raises(ConfigError, match="share the number"):
        parse_campaigns({"campaign": [table(), table(id="lyon")]})


def test_missing_file_and_bad_toml_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_campaigns(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[campaign]\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_campaigns(bad)


def test_a_curly_apostrophe_in_a_reply_is_warned_about_with_the_gsm_cost():
    from streams.cli import ucs2_warning

    assert ucs2_warning("Non, c'est non.") is None
    warning = ucs2_warning("Non, c\u2019est non. " * 10)
    assert "\u2019" in warning and "with straight quotes it would be" in warning
    assert "UCS-2" in ucs2_warning("\u00ab Non \u00bb \U0001F600")


# -- providers (infra.providers): which provider each campaign uses, checked at start ------

import datetime as _dt  # noqa: E402

from infra.providers import parse_providers  # noqa: E402


def _provider_data(**top):
    paris = dict(_BASE_CAMPAIGN_FOR_PROVIDERS, id="paris", number="+33644630001")
    lyon = dict(_BASE_CAMPAIGN_FOR_PROVIDERS, id="lyon", number="+33644630002")
    data = {"campaign": [paris, lyon]}
    data.update(top)
    return data


_BASE_CAMPAIGN_FOR_PROVIDERS = {
    "reply_text": "Non.", "language": "fr", "budget_eur": "10", "price_per_segment_eur": "0.08",
    "start": _dt.date(2026, 1, 1), "end": _dt.date(2027, 1, 1),
}


def _providers(data, environ=None):
    return parse_providers(data, parse_campaigns(data), "c.toml", environ or {})


def test_classic_is_the_default_provider():
    p = _providers(_provider_data())
    assert p.by_campaign == {"paris": "messagebird", "lyon": "messagebird"} and not p.uses_bird


def test_a_deployment_or_a_campaign_may_choose_bird_with_its_channel_and_workspace():
    data = _provider_data(provider="bird", bird={"workspace_id": "ws-1"})
    data["campaign"][0]["bird_channel_id"] = "ch-paris"
    data["campaign"][1].update(provider="messagebird")
    p = _providers(data)
    assert p.by_campaign == {"paris": "bird", "lyon": "messagebird"}
    assert (p.bird_channels, p.bird_workspace_id) == ({"ch-paris": "paris"}, "ws-1")
    assert _providers(data, {"BIRD_WORKSPACE_ID": "ws-env"}).bird_workspace_id == "ws-env"


@pytest.mark.parametrize("change,message", [
    (lambda d: d.update(provider="twilio"), "'provider' must be one of"),
    (lambda d: d["campaign"][0].update(provider="bird"), "needs 'bird_channel_id'"),
    (lambda d: d["campaign"][0].update(provider="bird", bird_channel_id="c"),
     "need the workspace id"),
    (lambda d: (d.update(provider="bird", bird={"workspace_id": "w"}),
                d["campaign"][0].update(bird_channel_id="c"),
                d["campaign"][1].update(bird_channel_id="c")), "also the channel of"),
    (lambda d: d["campaign"][0].update(bird_channel_id="c"), "but the provider is"),
    (lambda d: d.update(bird={"workspace": "w"}), "unknown keys"),
    (lambda d: (d.update(provider="bird", bird={"workspace_id": "w", "endpoint": "ftp://x"}),
                d["campaign"][0].update(bird_channel_id="c"),
                d["campaign"][1].update(bird_channel_id="d")), "http"),
])
def test_a_bad_provider_setting_fails_at_start_naming_the_campaign(change, message):
    data = _provider_data()
    change(data)
    with pytest.raises(ConfigError, match=message):
        _providers(data)


def test_a_campaign_policy_table_sets_version_1_with_the_operator_parser(tmp_path):
    from actors.campaign import initial_policy
    from infra.config import ConfigError, load_campaigns

    path = tmp_path / "c.toml"
    path.write_text(
        '[[campaign]]\nid = "p"\nnumber = "+33644630001"\nreply_text = "x"\nlanguage = "fr"\n'
        'budget_eur = "10"\nprice_per_segment_eur = "0.08"\nstart = 2026-01-01\n'
        'end = 2027-01-01\npolicy = { surge_multiple = "off", surge_expected_per_minute = 40,'
        ' filter_test_texts = false }\n')
    (c,) = load_campaigns(path)
    policy = initial_policy(c)
    assert (policy.version, policy.surge_multiple, policy.surge_expected_per_minute,
            policy.filter_test_texts) == (1, 0, 40, False)
    path.write_text(path.read_text().replace("surge_expected_per_minute = 40", "surge_fast = 1"))
    with pytest.raises(ConfigError, match="policy: unknown policy key 'surge_fast'"):
        load_campaigns(path)
