"""Operator sign-in: distinct from API keys, argon2id, server-side sessions in strict cookies, CSRF on every form,
a strict CSP, lockout after repeated failures."""

from __future__ import annotations

import time

import httpx
from sqlalchemy import select

from gateway.storage.store import Store
from gateway.storage.tables import login_failures, operator_sessions, operators
from tests.console.conftest import EMAIL, PASSWORD, Console, add_operator_to, csrf_of, tagged
from tests.gateway.conftest import Harness, run_sync


def _rows(h: Harness, table: object) -> list[object]:
    async def go() -> list[object]:
        store = await Store.open(h.database_url, h.keyring)
        try:
            async with store.engine.connect() as conn:
                return list((await conn.execute(select(table))).all())  # type: ignore[call-overload]
        finally:
            await store.close()

    return run_sync(go())


def test_sign_in_sets_a_strict_session_cookie_and_stores_only_hashes(harness: Harness) -> None:
    add_operator_to(harness)
    c = Console(harness)
    page = c.get("/console/sign-in")
    assert page.status_code == 200
    assert tagged(page.text, "sign-in-form")
    assert '<label for="email">' in page.text
    assert '<label for="password">' in page.text
    r = c.sign_in()
    assert r.status_code == 303
    assert r.headers["location"] == "/console"
    [session] = [v for v in r.headers.get_list("set-cookie") if v.startswith("egw_console=")]
    token = session.split(";")[0].split("=", 1)[1]
    flags = session.lower()
    assert "httponly" in flags
    assert "samesite=strict" in flags
    assert "path=/console" in flags
    assert "secure" not in flags  # 127.0.0.1: plain HTTP on the operator's own machine
    assert c.get("/console").status_code == 200
    assert c.session_token == token

    [row] = _rows(harness, operators)
    assert row.password_hash.startswith("$argon2id$")  # type: ignore[attr-defined]
    assert PASSWORD not in row.password_hash  # type: ignore[attr-defined]
    [stored] = _rows(harness, operator_sessions)
    assert stored.id != token
    assert len(stored.id) == 64

    r = c.post("/console/sign-out")
    assert (r.status_code, r.headers["location"]) == (303, "/console/sign-in")
    assert _rows(harness, operator_sessions) == []
    assert c.get("/console").status_code == 303  # the cookie no longer opens anything
    c.close()


def test_the_session_cookie_is_secure_outside_localhost(harness: Harness) -> None:
    """Reached by any other name (through a TLS-terminating proxy), every console cookie is Secure."""
    add_operator_to(harness)
    host = {"host": "console.clinic.example"}
    with httpx.Client(base_url=harness.base_url, headers=host, timeout=60) as http:
        page = http.get("/console/sign-in")
        [pre] = page.headers.get_list("set-cookie")
        assert "secure" in pre.lower()
        token = pre.split(";")[0].split("=", 1)[1]
        r = http.post(
            "/console/sign-in",
            data={"_csrf": csrf_of(page.text), "email": EMAIL, "password": PASSWORD},
            headers={"cookie": f"egw_console_signin={token}"},
        )
    assert r.status_code == 303, r.text
    [session] = [v for v in r.headers.get_list("set-cookie") if v.startswith("egw_console=")]
    assert "secure" in session.lower()
    assert "httponly" in session.lower()


def test_wrong_password_and_unknown_email_get_the_same_answer(harness: Harness) -> None:
    add_operator_to(harness)
    c = Console(harness)
    wrong = c.sign_in(password="not the password at all")
    unknown = c.sign_in(email="nobody@clinic.example")
    assert wrong.status_code == unknown.status_code == 401
    assert tagged(wrong.text, "sign-in-error")
    assert tagged(unknown.text, "sign-in-error")
    message = "The e-mail or the password is wrong."
    assert message in wrong.text
    assert message in unknown.text
    assert "egw_console=" not in " ".join(wrong.headers.get_list("set-cookie"))
    assert PASSWORD not in wrong.text
    c.close()


def test_five_failures_lock_the_email_for_fifteen_minutes(harness: Harness) -> None:
    add_operator_to(harness)
    c = Console(harness)
    for _ in range(4):
        assert c.sign_in(password="wrong password 123").status_code == 401
    locked = c.sign_in(password="wrong password 123")
    assert locked.status_code == 429
    assert "locked" in locked.text
    # Locked: even the right password is refused, and an unknown e-mail locks the same way (no tell).
    assert c.sign_in().status_code == 429
    for _ in range(5):
        last = c.sign_in(email="ghost@clinic.example")
    assert last.status_code == 429
    [row, *_] = _rows(harness, login_failures)
    assert EMAIL not in str(row)  # keyed by a digest, never the address
    # Another operator is not affected.
    add_operator_to(harness, "other@clinic.example")
    assert c.sign_in(email="other@clinic.example").status_code == 303
    c.close()


def test_failures_spread_over_time_do_not_lock(harness: Harness) -> None:
    """Constant-ish time: a wrong password and an unknown e-mail both pay for an argon2 check."""
    add_operator_to(harness)
    c = Console(harness)
    started = time.perf_counter()
    c.sign_in(password="wrong password 123")
    wrong = time.perf_counter() - started
    started = time.perf_counter()
    c.sign_in(email="nobody@clinic.example")
    unknown = time.perf_counter() - started
    assert unknown > wrong / 5  # an unknown e-mail is not answered without hashing (generous: CI timing is noisy)
    assert c.sign_in().status_code == 303  # one failure: not locked, and a success clears it
    assert len(_rows(harness, login_failures)) == 1  # the unknown e-mail's, under its own digest
    c.close()


def test_csrf_is_required_on_every_console_post(harness: Harness) -> None:
    add_operator_to(harness)
    c = Console(harness)
    c.get("/console/sign-in")
    # The sign-in form itself: without the double-submit token, or with another one.
    assert c.post("/console/sign-in", {"email": EMAIL, "password": PASSWORD}, csrf="").status_code == 403
    assert c.post("/console/sign-in", {"email": EMAIL, "password": PASSWORD}, csrf="x" * 43).status_code == 403
    assert c.sign_in().status_code == 303
    c.get("/console")
    location_id = harness.sites[0].location_id
    for path in (
        f"/console/locations/{location_id}/keys",
        f"/console/locations/{location_id}/verify",
        f"/console/locations/{location_id}/sync",
        "/console/trace",
        "/console/sign-out",
    ):
        missing = c.post(path, csrf="")
        wrong = c.post(path, csrf="not-the-session-token")
        assert (missing.status_code, wrong.status_code) == (403, 403), path
        assert "The form has expired" in wrong.text
    with harness.client() as api:
        assert api.get("/v1/practitioners").status_code == 200
        keys = [k for k in run_sync(_keys(harness)) if k.location_id == location_id]
    assert len(keys) == 1  # no key was issued by the refused POSTs
    assert c.get("/console").status_code == 200  # still signed in (sign-out was refused too)
    c.close()


async def _keys(h: Harness) -> list[object]:
    store = await Store.open(h.database_url, h.keyring)
    try:
        return list(await store.list_keys())
    finally:
        await store.close()


def test_console_answers_carry_a_strict_csp_and_no_framing(harness: Harness) -> None:
    add_operator_to(harness)
    c = Console(harness)
    for r in (c.get("/console/sign-in"), c.get("/console"), c.get("/console/static/console.css"), c.get("/console/x")):
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "style-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "script-src" not in csp
        assert "unsafe-inline" not in csp
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
    page = c.get("/console/sign-in")
    assert page.headers["cache-control"] == "no-store"
    assert "<script" not in page.text
    assert "style=" not in page.text
    assert c.get("/console/static/console.css").headers["content-type"].startswith("text/css")
    # The JSON API is not the console: no CSP there, and its POSTs need no CSRF token.
    with harness.client() as api:
        assert "content-security-policy" not in api.get("/v1/practitioners").headers
    c.close()


def test_an_api_key_does_not_open_the_console(harness: Harness) -> None:
    with harness.client() as api:
        r = api.get("/console")
    assert r.status_code == 303
    assert r.headers["location"] == "/console/sign-in"
