"""Single sign-on in the web app, in Chromium: "Sign in with <name>" when the deployment
offers it, the local OpenID Connect provider's own login page (another site: it is issued
as localhost, the app served at 127.0.0.1), and back in the app signed in."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import expect

from tests.fixtures.oidc import PROVIDER_NAME
from tests.fixtures.oidc_provider import LOGIN_PAGE_TITLE
from tests.web.conftest import save_artifact

pytestmark = pytest.mark.e2e

SESSION_COOKIES = {"access_token", "refresh_token", "device_id"}


def _email() -> str:
    return f"web-sso-{uuid.uuid4().hex[:10]}@example.com"


def test_signing_in_with_the_provider_lands_in_the_app_signed_in(
    page, web_build, oidc_gateway_url, oidc_provider
):
    user = oidc_provider.add_user(_email(), name="Grace Hopper")
    page.goto(oidc_gateway_url)
    button = page.get_by_role("link", name=f"Sign in with {PROVIDER_NAME}")
    expect(button).to_be_visible()
    page.get_by_label("Keep me signed in").check()
    save_artifact(page, "oidc-sign-in.png")
    button.click()

    # The provider's own page, on its own site.
    expect(page.get_by_role("heading", name=LOGIN_PAGE_TITLE)).to_be_visible()
    assert page.url.startswith(oidc_provider.issuer + "/authorize?")
    page.get_by_label("Email").fill(user.login)
    page.get_by_role("button", name="Sign in").click()

    # Back in the app, signed in, on the files view.
    expect(page.get_by_role("heading", name="Your files")).to_be_visible()
    assert page.url == oidc_gateway_url + "/"
    cookies = {c["name"]: c for c in page.context.cookies(oidc_gateway_url)}
    assert SESSION_COOKIES <= set(cookies)
    assert cookies["access_token"]["httpOnly"] and cookies["access_token"]["sameSite"] == "Strict"
    assert "oidc_flow" not in cookies  # the flow is over
    # "Keep me signed in" went along: a long session (30 days, not one).
    assert cookies["device_id"]["expires"] - cookies["access_token"]["expires"] < 5
    assert cookies["device_id"]["expires"] > page.evaluate("Date.now() / 1000") + 29 * 86400
    # A reload finds the session; signing out ends it.
    page.reload()
    expect(page.get_by_role("heading", name="Your files")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("link", name=f"Sign in with {PROVIDER_NAME}")).to_be_visible()


def test_a_refused_sign_in_says_why_and_leads_back(
    page, web_build, oidc_gateway_url, oidc_provider
):
    user = oidc_provider.add_user(_email(), email_verified=False)
    page.goto(oidc_gateway_url)
    page.get_by_role("link", name=f"Sign in with {PROVIDER_NAME}").click()
    page.get_by_label("Email").fill(user.login)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Sign-in refused")).to_be_visible()
    expect(page.get_by_text(f"{PROVIDER_NAME} has not verified your email address")).to_be_visible()
    save_artifact(page, "oidc-refused.png")
    page.get_by_role("link", name="Back to Dropfile").click()
    expect(page.locator("#sign-in-form")).to_be_visible()
    assert not SESSION_COOKIES & {c["name"] for c in page.context.cookies(oidc_gateway_url)}


def test_without_single_sign_on_there_is_no_button(page, web_build, gateway_url):
    page.goto(gateway_url)
    expect(page.locator("#sign-in-form")).to_be_visible()
    expect(page.locator("#sso")).to_be_hidden()
