"""Accounts on the pages through AppTest: the login page guards every page, each role sees what it
may do, the library refuses the rest (one line, no traceback), admins manage users, Home shows who
did what, and a network app without accounts refuses to run. The cookie that keeps a login across
reloads needs a browser: test_browser_login.py."""

from __future__ import annotations

import contextlib
import json
import shutil

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from streamlit import config

from conftest import ROOT
from cowdetect.accounts import PermissionDenied, User
from cowdetect.demo import make_demo
from cowdetect.detections import Detections
from cowdetect.store import Store
from ui.auth import ENDED, WRONG

PASSWORD = "correct horse"
TEAM = {"ada": "admin", "tom": "trainer", "lea": "labeler", "vic": "viewer"}


@pytest.fixture(scope="module")
def team_template(tmp_path_factory) -> str:
    """Demo images (labeled, split), one model version, four accounts: made once (Argon2 is slow on purpose)."""
    folder = tmp_path_factory.mktemp("team") / "data"
    admin = Store(folder)
    make_demo(admin, n_train=5, n_val=0, n_test=1, seed=2, size=(96, 64), video=False)  # 5: enough to train
    for name, role in TEAM.items():
        admin.add_user(name, role, PASSWORD)
    checkpoint = folder.parent / "m.pt"
    checkpoint.write_bytes(b"weights")  # listed, never loaded, by these pages
    admin.add_model("first", "ssd_mobilenet_v2_coco", ["cow"], checkpoint)
    with admin.connect() as conn:  # everything in the main file, so a plain copy is complete
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return str(folder)


@pytest.fixture
def team(team_template, tmp_path) -> Store:
    """A fresh copy of the template (the local user's store)."""
    shutil.copytree(team_template, tmp_path / "data")
    return Store(tmp_path / "data")


def app(store: Store, monkeypatch, as_user: str | None = None, page: str | None = None) -> AppTest:
    """The app (app.py's router) on ``store``'s folder, logged in as ``as_user`` (a token in session
    state, as the login form or the cookie leaves it), on ``page``; run once without exceptions."""
    monkeypatch.setenv("COWDETECT_DATA_DIR", str(store.data_dir))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    if as_user:
        at.session_state["auth_token"] = store.session_token(User(as_user, TEAM[as_user]))
    if page:
        at.switch_page(f"app_pages/{page}.py")
    return run(at)


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def click(at: AppTest, label: str, where=None) -> AppTest:
    next(b for b in (where or at).button if b.label == label).click()
    return run(at)


@contextlib.contextmanager
def server_address(address: str):
    """As if the server listened on ``address`` (``--server.address``); AppTest runs in this process."""
    old = config.get_option("server.address")
    config.set_option("server.address", address)
    try:
        yield
    finally:
        config.set_option("server.address", old)


def log_in(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input(key="login_name").input(name)
    at.text_input(key="login_password").input(password)
    return click(at, "Log in")


def titles(at: AppTest) -> list[str]:
    return [t.value for t in at.title]


def labels(at: AppTest) -> list[str]:
    return [b.label for b in at.button]


def test_with_accounts_only_the_login_page_is_reachable(team, monkeypatch):
    at = app(team, monkeypatch)
    assert "Log in" in labels(at) and at.text_input(key="login_password").proto.type == 1  # a password field
    for page in ("data", "label", "models", "users", "home"):  # a deep link to each
        at = app(team, monkeypatch, page=page)
        assert "Log in" in labels(at), page
        assert not at.metric and not at.dataframe and not at.get("image")  # nothing of the data shows
        assert titles(at) == ["🐄 cowdetect"]


@pytest.mark.parametrize("name, password", [("lea", "wrong password"), ("nobody", PASSWORD), ("lea", ""),
                                            ("", ""), ("lea\0", PASSWORD), ("x" * 5000, PASSWORD * 500)])
def test_a_wrong_login_is_one_neutral_line(team, monkeypatch, name, password):
    at = log_in(app(team, monkeypatch), name, password)
    assert [e.value for e in at.error] == [WRONG]  # the same for an unknown name and a wrong password
    assert "Log in" in labels(at) and at.session_state["auth_token"] is None


def test_the_right_login_opens_the_pages(team, monkeypatch):
    at = log_in(app(team, monkeypatch), "lea", PASSWORD)
    assert titles(at) == ["🐄 cowdetect"] and at.metric  # Home
    assert "signed in as **lea** (labeler)" in [c.value for c in at.sidebar.caption]
    assert team.session_user(at.session_state["auth_token"]) == User("lea", "labeler")
    at.switch_page("app_pages/data.py")
    assert titles(run(at)) == ["Data"]


def test_the_users_page_is_for_admins(team, monkeypatch):
    assert titles(app(team, monkeypatch, "ada", "users")) == ["Users"]
    for name in ("tom", "lea", "vic"):
        at = app(team, monkeypatch, name, "users")
        assert "Users" not in titles(at), name  # not in their navigation: Home instead


def test_a_labeler_sees_no_delete_and_the_library_refuses_it(team, monkeypatch):
    at = app(team, monkeypatch, "lea", "models")
    assert titles(at) == ["Models"]
    assert not {"Delete", "Set active", "Rename"} & set(labels(at))
    as_lea = team.as_user(team.account("lea"))
    with pytest.raises(PermissionDenied, match="lea \\(labeler\\) may not delete"):
        as_lea.delete_model(team.models()[0].id)
    assert len(team.models()) == 1


def test_a_trainer_may_set_the_active_model_but_not_delete(team, monkeypatch):
    at = app(team, monkeypatch, "tom", "models")
    assert "Set active" in labels(at) and "Delete" not in labels(at)
    click(at, "Set active")
    assert at.success[0].value.endswith("is now the active model.")
    assert team.activity(1)[0]["user"] == "tom"


def test_a_viewer_cannot_save_boxes(team, monkeypatch):
    image_id = team.images()[0].id
    before = team.boxes(image_id).xyxy.tolist()
    at = app(team, monkeypatch, "vic", "label")
    assert next(b for b in at.button if b.label == "Save").disabled  # a courtesy; the store refuses anyway:
    editor = at.session_state["label_editor"]
    editor.save([{"label": "cow", "xyxy": [1.0, 1.0, 9.0, 9.0], "suggested": False}], image_id, editor.version)
    run(at)  # what the Save callback does, as a forged click would
    assert [e.value for e in at.error] == ["Not saved: vic (viewer) may not label: that needs the labeler role or "
                                           "higher"]
    assert team.boxes(image_id).xyxy.tolist() == before
    with pytest.raises(PermissionDenied):
        team.as_user(User("vic", "viewer")).set_boxes(image_id, Detections.from_names(
            np.array([[1.0, 1.0, 9.0, 9.0]]), ["cow"], team.class_names()))


@pytest.mark.parametrize("page, title", [("home", "🐄 cowdetect"), ("data", "Data"), ("label", "Label"),
                                         ("predictions", "Predictions"), ("train", "Train"),
                                         ("evaluate", "Evaluate"), ("models", "Models"), ("track", "Track")])
def test_a_viewer_browses_every_page(team, monkeypatch, page, title):
    at = app(team, monkeypatch, "vic", page)
    assert titles(at) == [title]
    assert not [e.value for e in at.error if "may not" in e.value]  # nothing refused just for looking


def test_buttons_a_role_lacks_are_disabled(team, monkeypatch):
    at = app(team, monkeypatch, "vic", "data")
    assert next(b for b in at.button if b.label == "Add images").disabled
    assert next(b for b in at.button if b.label == "Import COCO").disabled
    assert next(b for b in at.button if b.label == "Pre-label").disabled
    at = app(team, monkeypatch, "lea", "data")
    assert not next(b for b in at.button if b.label == "Add images").disabled
    at = app(team, monkeypatch, "lea", "train")
    assert next(b for b in at.button if b.label == "Start training").disabled


REFUSAL = "ada (admin) may not do this: a rule stricter than the page's buttons"


def select(at: AppTest, key: str, value: str) -> AppTest:
    at.selectbox(key=key).select(value)
    return run(at)


# (page, what to do first, the button, where the one line appears)
WRITES = [
    ("train", None, "Start training", "error"),
    ("models", None, "Set active", "error"),
    ("models", None, "Rename", "error"),
    ("data", ("browse_move", "val"), "Move 6 images to val", "error"),
    ("label", None, "Save", "error"),
]


@pytest.mark.parametrize("page, first, label, kind", WRITES, ids=[f"{w[0]}-{w[2]}" for w in WRITES])
def test_a_library_refusal_on_any_write_is_one_line(team, monkeypatch, page, first, label, kind):
    """Streamlit drops clicks on disabled buttons; should the library refuse more than a page's
    buttons say (a rule the page does not know), the page still shows one line, no traceback."""
    at = app(team, monkeypatch, "ada", page)
    if first:
        select(at, *first)
    if label == "Rename":
        at.text_input(key="new_name").input("herd")

    def deny(self, action):
        raise PermissionDenied(REFUSAL)

    monkeypatch.setattr(Store, "require", deny)
    click(at, label)
    shown = [e.value for e in getattr(at, kind)]
    assert len(shown) == 1 and shown[0].endswith(REFUSAL), shown
    assert not team.runs() and team.models()[0].name == "first" and team.count_images("val") == 0


def test_home_shows_recent_activity_and_the_last_backup(team, monkeypatch):
    team.as_user(team.account("ada")).rename_model(team.models()[0].id, "herd")
    team.as_user(team.account("lea")).set_split([team.images()[0].id], "val")
    at = app(team, monkeypatch, "ada")
    activity = at.dataframe[-1].value
    assert list(activity.columns) == ["when (UTC)", "who", "what"]
    assert activity["who"].tolist()[:2] == ["lea", "ada"]  # newest first
    assert "val" in activity["what"].iloc[0] and "herd" in activity["what"].iloc[1]
    assert len(activity) <= 20
    assert "Last backup: never — `python -m cowdetect backup OUT.tar.gz`" in [c.value for c in at.caption]
    team.set_setting("last_backup", json.dumps({"at": "2026-12-01 10:00:00", "archive": "/backups/cows.tar.gz"}))
    assert "Last backup: 2026-12-01 10:00:00 (`/backups/cows.tar.gz`)" in [c.value for c in run(at).caption]


def test_admin_adds_changes_and_removes_accounts(team, monkeypatch):
    at = app(team, monkeypatch, "ada", "users")
    assert at.dataframe[0].value["name"].tolist() == sorted(TEAM)

    def add(name: str, role: str, password: str, again: str) -> AppTest:
        at.text_input(key="new_user_name").input(name)
        at.selectbox(key="new_user_role").select(role)
        at.text_input(key="new_user_password").input(password)
        at.text_input(key="new_user_again").input(again)
        return click(at, "Add account")

    assert add("bea", "labeler", PASSWORD, "other one")
    assert [e.value for e in at.error] == ["Not added: the two passwords differ"]
    add("bea", "labeler", "short", "short")
    assert [e.value for e in at.error] == ["Not added: password: expected 8 to 1024 characters"]
    add("bea", "labeler", PASSWORD, PASSWORD)
    assert "Added bea (labeler)." in [s.value for s in at.success]
    assert team.authenticate("bea", PASSWORD) == User("bea", "labeler")

    at.selectbox(key="user_chosen").select("bea")
    run(at)
    at.selectbox(key="user_role-bea").select("trainer")
    click(at, "Set role")
    assert team.account("bea") == User("bea", "trainer")
    at.text_input(key="user_password").input("new password!")
    click(at, "Reset password")
    assert team.authenticate("bea", "new password!") is not None
    at.checkbox(key="user_sure").check()
    run(at)
    click(at, "Remove account")
    assert team.account("bea") is None
    at.selectbox(key="user_chosen").select("ada")
    run(at)
    at.selectbox(key="user_role-ada").select("viewer")
    click(at, "Set role")
    assert "last admin" in at.error[0].value and team.account("ada").role == "admin"


def test_the_first_account_made_on_the_page_is_an_admin_and_logins_start(tmp_path, monkeypatch):
    store = Store(tmp_path / "data")
    at = app(store, monkeypatch, page="users")
    assert at.selectbox(key="new_user_role").options == ["admin"]
    at.text_input(key="new_user_name").input("ada")
    at.text_input(key="new_user_password").input(PASSWORD)
    at.text_input(key="new_user_again").input(PASSWORD)
    click(at, "Add account")
    assert "Log in" in labels(at)  # this session too
    assert "log in as ada" in at.success[0].value


def test_a_session_ends_when_its_password_changes(team, monkeypatch):
    at = app(team, monkeypatch, "lea", "data")
    assert titles(at) == ["Data"]
    team.set_password("lea", "another password")
    run(at)
    assert [w.value for w in at.warning] == [ENDED] and "Log in" in labels(at)
    team.remove_user("vic")
    at = app(team, monkeypatch)
    at.session_state["auth_token"] = "vic|9999999999|0|forged"
    assert "Log in" in labels(run(at))


def test_log_out_and_change_my_password(team, monkeypatch):
    at = app(team, monkeypatch, "lea")
    sidebar = at.sidebar
    sidebar.text_input(key="my_pw_current").input("not it at all")
    sidebar.text_input(key="my_pw_new").input("brand new pass")
    sidebar.text_input(key="my_pw_again").input("brand new pass")
    click(at, "Change password")
    assert at.sidebar.error[0].value == "Password not changed: the current password is wrong"
    at.sidebar.text_input(key="my_pw_current").input(PASSWORD)
    at.sidebar.text_input(key="my_pw_new").input("brand new pass")
    at.sidebar.text_input(key="my_pw_again").input("brand new pass")
    click(at, "Change password")
    assert at.sidebar.success[0].value == "Password changed."
    assert team.authenticate("lea", "brand new pass") is not None
    assert titles(run(at)) == ["🐄 cowdetect"] and at.metric  # still logged in, with the new token
    click(at, "Log out")
    assert "Log in" in labels(at) and at.info[0].value == "Logged out."
    assert at.session_state["auth_token"] is None


@pytest.mark.parametrize("address", ["0.0.0.0", "192.168.1.20", "::", "cows.example.org"])
def test_a_network_app_without_accounts_refuses(tmp_path, monkeypatch, address):
    store = Store(tmp_path / "data")
    with server_address(address):
        at = app(store, monkeypatch)
    assert len(at.error) == 1 and "python -m cowdetect users add NAME --role admin" in at.error[0].value
    assert address in at.error[0].value
    assert not at.title and not at.metric  # no page ran


def test_behind_a_proxy_require_login_refuses_without_accounts(tmp_path, monkeypatch):
    # a reverse proxy reaches a loopback app from the network; COWDETECT_REQUIRE_LOGIN=1 says so
    monkeypatch.setenv("COWDETECT_REQUIRE_LOGIN", "1")
    store = Store(tmp_path / "data")
    with server_address("127.0.0.1"):
        at = app(store, monkeypatch)
    assert len(at.error) == 1 and "127.0.0.1 behind a proxy" in at.error[0].value
    assert not at.title and not at.metric


@pytest.mark.parametrize("address", ["127.0.0.1", "localhost", "::1"])
def test_a_loopback_app_without_accounts_needs_no_login(tmp_path, monkeypatch, address):
    store = Store(tmp_path / "data")
    with server_address(address):
        at = app(store, monkeypatch)
    assert titles(at) == ["🐄 cowdetect"] and not at.error
    assert any(c.value.startswith("**local:") and "(admin) · no login" in c.value for c in at.sidebar.caption)


def test_a_network_app_with_accounts_asks_for_a_login(team, monkeypatch):
    with server_address("0.0.0.0"):
        at = app(team, monkeypatch)
    assert "Log in" in labels(at) and not at.error




def test_a_viewer_may_not_export_a_model(team, monkeypatch):
    """An ONNX export carries a model's weights out of the app: the button is disabled for a viewer, and the
    action the page asks the store for (before exporting) is refused for a viewer, allowed for a trainer."""
    at = app(team, monkeypatch, "vic", "models")
    assert at.button(key="export_onnx").disabled
    with pytest.raises(PermissionDenied, match="may not manage models"):
        team.as_user(User("vic", "viewer")).require("manage_models")
    team.as_user(User("tom", "trainer")).require("manage_models")
    assert not app(team, monkeypatch, "tom", "models").button(key="export_onnx").disabled
