"""Who this session is: the local user (no accounts, the app on this machine only), or the account
logged in here — its signed token kept in session state and in a browser cookie, so a reload
stays logged in — and the sidebar that says so, logs out and changes one's own password.

Roles are enforced by the library (every store write checks the store's user); this module only
decides which user a session's store acts as (:func:`ui.store`).

The cookie is written by the page's own script, so it cannot be HttpOnly: a script injected into
the page could read it. Rule: never render user-supplied text (image, class, model or user names)
with ``unsafe_allow_html`` or ``st.html``; Streamlit escapes everything else.
"""

from __future__ import annotations

import ipaddress
import os
import json

import streamlit as st
from streamlit import config as st_config

from cowdetect.accounts import SESSION_SECONDS, PermissionDenied, TooManyFailures, User, local_user
from cowdetect.store import Store

COOKIE = "cowdetect_session"
TOKEN = "auth_token"      # session state: this session's login token; None once logged out
PENDING = "auth_cookie"   # session state: a cookie value to write into the browser this run ("" clears it)
FLASH = "auth_flash"      # session state: a message for the login page or the sidebar
WRONG = "Wrong name or password."
ENDED = "Your session ended (the password changed, the account was removed, or it expired): log in again."
LOOPBACK = {"localhost", "127.0.0.1", "::1"}
REFUSAL = ("This app is served on the network ({address}) but the data folder has no accounts, so anyone who can "
           "reach it could change or delete everything. Create an admin first — python -m cowdetect users add NAME "
           "--role admin — then reload; or serve it on this machine only: ./run.sh app")


def listening_address() -> str | None:
    """The address the server listens on: ``server.address``; unset means every interface.
    Under AppTest (``global.appTest``) nothing listens, and an unset address is loopback."""
    address = st.get_option("server.address")
    if not address and st_config.get_option("global.appTest"):  # AppTest patches this getter, not st's
        return "127.0.0.1"
    return address or None


def is_loopback(address: str | None) -> bool:
    """Whether a server bound to ``address`` (None: all interfaces) is reachable from this machine only."""
    if not address:
        return False
    if address.strip("[]").lower() in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def _cookie_script(value: str) -> str:
    """A script that sets (or, with "", deletes) the session cookie; Secure over HTTPS."""
    age = SESSION_SECONDS if value else 0
    return (f"<script>document.cookie = {json.dumps(f'{COOKIE}={value}')} + '; path=/; max-age={age}; "
            f"SameSite=Strict' + (location.protocol === 'https:' ? '; Secure' : '');</script>")


def _write_cookie() -> None:
    """Put a pending cookie change into the browser (a script in this run's page, run once)."""
    if PENDING in st.session_state:
        st.html(_cookie_script(st.session_state.pop(PENDING)), unsafe_allow_javascript=True)


def _cookie_token() -> str | None:
    """The session cookie the browser sent when this session connected, if any."""
    value = st.context.cookies.get(COOKIE)
    return value if isinstance(value, str) and value else None


def _start_session(token: str | None, message: tuple[str, str] | None = None) -> None:
    """Forget everything this session held (another user's editor, forms) and keep ``token``."""
    st.session_state.clear()
    st.session_state[TOKEN] = token
    st.session_state[PENDING] = token or ""
    if message:
        st.session_state[FLASH] = message


def signed_in(base: Store) -> User | None:
    """This session's user, checked on every run, or None (show the login page).

    Without accounts: the local user (admin) — unless the server listens beyond this machine,
    then one line says how to create an admin and the run stops. With accounts: the account
    whose token this session holds (from the login form, or the cookie of an earlier visit),
    as long as the token is valid, unexpired and the account keeps its password.
    """
    _write_cookie()
    if not base.has_accounts():
        address = listening_address()
        # behind a reverse proxy the app listens on loopback, yet the network reaches it:
        # COWDETECT_REQUIRE_LOGIN=1 says so, and then no accounts means no entry either
        if not is_loopback(address) or os.environ.get("COWDETECT_REQUIRE_LOGIN") == "1":
            shown = address or "all interfaces"
            st.error(REFUSAL.format(address=shown if is_loopback(address) is False else f"{shown} behind a proxy"))
            st.stop()
        return local_user()
    if TOKEN not in st.session_state:
        st.session_state[TOKEN] = _cookie_token()
    token = st.session_state[TOKEN]
    try:
        user = base.session_user(token) if token else None
    except (OSError, ValueError) as exc:  # the session secret is damaged or readable by others
        st.error(f"Logins are off until an admin fixes this: {exc}")
        st.stop()
    if token and user is None:
        _start_session(None, ("warning", ENDED))
        st.rerun()
    return user


def login_form(base: Store) -> None:
    """What every page shows until someone logs in: the name and password form (and why the last
    session ended, or that one logged out)."""
    st.title("🐄 cowdetect")
    show_flash()
    with st.form("login", clear_on_submit=True):
        name = st.text_input("Name", key="login_name", autocomplete="username")
        password = st.text_input("Password", type="password", key="login_password", autocomplete="current-password")
        go = st.form_submit_button("Log in", type="primary")
    if go:
        log_in(base, name, password)
    st.caption("No account? Ask an admin: they add one on the Users page or with `python -m cowdetect users add "
               "NAME --role labeler`.")


def log_in(base: Store, name: str, password: str) -> None:
    """The login form's action: on the right name and password start this session as that account
    (and rerun); else one neutral line that does not say which of the two was wrong."""
    try:
        user = base.authenticate(name.strip(), password) if name.strip() and password else None
    except TooManyFailures as exc:
        st.error(f"{str(exc)[0].upper()}{str(exc)[1:]}.")
        return
    if user is None:
        st.error(WRONG)
        return
    _start_session(base.session_token(user))
    st.rerun()


def log_out(base: Store, user: User) -> None:
    """Button callback: end this account's sessions (here and on every other device: its tokens
    stop working in the library) and delete the cookie."""
    base.as_user(user).end_sessions(user.name)
    _start_session(None, ("info", "Logged out."))


def _change_password(base: Store, user: User) -> None:
    """Form callback: check the current password, set the new one, keep this session logged in
    (a new token: the old ones, here and elsewhere, end with the old password)."""
    state = st.session_state
    current, new, again = state["my_pw_current"], state["my_pw_new"], state["my_pw_again"]
    try:
        if base.authenticate(user.name, current) is None:
            raise ValueError("the current password is wrong")
        if new != again:
            raise ValueError("the two new passwords differ")
        base.as_user(user).set_password(user.name, new)
    except (ValueError, PermissionError) as exc:  # PermissionDenied, TooManyFailures
        state[FLASH] = ("error", f"Password not changed: {exc}")
        return
    token = base.session_token(user)
    state[TOKEN], state[PENDING], state[FLASH] = token, token, ("success", "Password changed.")


def show_flash() -> None:
    """The message a login, logout or password change left for this run, once."""
    if FLASH in st.session_state:
        kind, text = st.session_state.pop(FLASH)
        getattr(st, kind)(text)


def account_sidebar(base: Store, user: User) -> None:
    """The sidebar's account box: who is signed in and their role; for an account, Log out and
    a form to change one's own password."""
    with st.sidebar:
        if not base.has_accounts():
            st.caption(f"**{user.name}** ({user.role}) · no login: only this machine can connect. Serving a team? "
                       "See Users.")
            return
        st.caption(f"signed in as **{user.name}** ({user.role})")
        show_flash()
        with st.expander("Change my password"):
            with st.form("my_password", clear_on_submit=True, border=False):
                st.text_input("Current password", type="password", key="my_pw_current")
                st.text_input("New password", type="password", key="my_pw_new")
                st.text_input("New password again", type="password", key="my_pw_again")
                st.form_submit_button("Change password", on_click=_change_password, args=(base, user))
        st.button("Log out", on_click=log_out, args=(base, user), key="log_out",
                  help="Ends your sessions on every device")
