"""Accounts, roles enforced in the library (not by hiding buttons), sessions and the activity log."""

from __future__ import annotations

import os
import shutil
import stat
import time

import numpy as np
import pytest

from cowdetect import accounts
from cowdetect.accounts import PermissionDenied, User
from cowdetect.detections import Detections
from cowdetect.jobs import create_run, prepare_resume, request_stop
from cowdetect.store import Store

PASSWORD = "correct horse"


def png(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def team_template(tmp_path_factory) -> str:
    """A data folder with four accounts, one image and one model, made once (Argon2 is slow on purpose)."""
    folder = tmp_path_factory.mktemp("team")
    admin = Store(folder)
    admin.add_user("ada", "admin", PASSWORD)
    for name, role in (("tom", "trainer"), ("lea", "labeler"), ("vic", "viewer")):
        admin.add_user(name, role, PASSWORD)
    admin.add_image(png(0), name="a.png")
    checkpoint = folder.parent / "m.pt"
    checkpoint.write_bytes(b"weights")
    admin.add_model("first", "ssd", ["cow"], checkpoint)
    with admin.connect() as conn:  # everything in the main file, so a plain copy is complete
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return str(folder)


@pytest.fixture
def team(team_template, tmp_path) -> dict[str, Store]:
    """A fresh copy of the template: one store per role."""
    folder = tmp_path / "data"
    shutil.copytree(team_template, folder)
    admin = Store(folder)
    return {role: admin.as_user(admin.account(name)) for name, role in
            (("ada", "admin"), ("tom", "trainer"), ("lea", "labeler"), ("vic", "viewer"))}


def cow(store: Store) -> Detections:
    return Detections.from_names(np.array([[1.0, 2.0, 30.0, 40.0]]), ["cow"], store.class_names())


# (what, call, least role that may do it)
ACTIONS = [
    ("import an image", lambda s: s.add_image(png(7), name="b.png"), "labeler"),
    ("save boxes", lambda s: s.set_boxes(s.images()[0].id, cow(s)), "labeler"),
    ("move to a split", lambda s: s.set_split([s.images()[0].id], "train"), "labeler"),
    ("suggest boxes", lambda s: s.set_suggestions(s.images()[0].id, cow(s), source="model"), "labeler"),
    ("start training", lambda s: create_run(s, "train", {"device": "cpu"}, 1), "trainer"),
    ("start tracking", lambda s: create_run(s, "track", {"device": "cpu"}, 1), "trainer"),
    ("start a pre-label run", lambda s: create_run(s, "prelabel", {"device": "cpu"}, 1), "labeler"),
    ("set the active model", lambda s: s.set_active_model(s.models()[0].id), "trainer"),
    ("rename a model", lambda s: s.rename_model(s.models()[0].id, "second"), "trainer"),
    ("delete a model", lambda s: s.delete_model(s.models()[0].id), "admin"),
    ("delete an image", lambda s: s.delete_image(s.images()[0].id), "admin"),
    ("list accounts", lambda s: s.users(), "admin"),
    ("add an account", lambda s: s.add_user("newbie", "viewer", PASSWORD), "admin"),
]


def snapshot(store: Store) -> tuple:
    """Everything the actions of the table could change."""
    image = store.images()[0].id if store.images() else None
    return (store.count_images(), [(m.id, m.name, m.active) for m in store.models()], len(store.runs()),
            [r.split for r in store.images()], len(store.boxes(image)) if image else 0,
            store.suggestions(image) is not None if image else False, team_accounts(store), store.activity())


def team_accounts(store: Store) -> list[tuple]:
    with store.connect() as conn:
        return [tuple(r) for r in conn.execute("SELECT name, role FROM users ORDER BY name")]


@pytest.mark.parametrize("what, call, least", ACTIONS, ids=[a[0] for a in ACTIONS])
@pytest.mark.parametrize("role", accounts.ROLES)
def test_each_role_may_do_exactly_what_its_rank_allows(team, what, call, least, role):
    store = team[role]
    before = snapshot(store)
    if accounts.ROLES.index(role) >= accounts.ROLES.index(least):
        call(store)
        assert snapshot(store) != before or what == "list accounts"
        if what == "import an image":  # one image through the API: its row says who added it
            with store.connect() as conn:
                assert conn.execute("SELECT added_by FROM images ORDER BY id DESC").fetchone()[0] == store.user.name
        elif what not in ("list accounts", "suggest boxes"):  # a read, and suggestions, write no log line
            assert store.activity()[0]["user"] == store.user.name
        return
    with pytest.raises(PermissionDenied, match=f"{store.user.name} \\({role}\\) may not"):
        call(store)
    assert snapshot(store) == before


def test_labeler_cannot_delete_a_model_or_start_training(team):
    labeler = team["labeler"]
    with pytest.raises(PermissionDenied):
        labeler.delete_model(labeler.models()[0].id)
    with pytest.raises(PermissionDenied):
        create_run(labeler, "train", {"device": "cpu"}, 10)
    assert [m.name for m in labeler.models()] == ["first"] and labeler.runs() == []


def test_stopping_or_resuming_a_run_needs_the_role_that_starts_it(team):
    run_id = create_run(team["trainer"], "train", {"device": "cpu"}, 10)
    with pytest.raises(PermissionDenied):
        request_stop(team["labeler"], run_id)
    request_stop(team["trainer"], run_id)
    assert team["admin"].run(run_id).status == "stopped"
    with pytest.raises(PermissionDenied):
        prepare_resume(team["viewer"], run_id)


def test_activity_names_who_did_what_newest_first(team):
    image_id = team["labeler"].images()[0].id
    team["labeler"].set_boxes(image_id, cow(team["labeler"]))
    run_id = create_run(team["trainer"], "train", {"device": "cpu"}, 10)
    team["trainer"].rename_model(team["trainer"].models()[0].id, "renamed")
    team["admin"].delete_model(team["admin"].models()[0].id)
    lines = [(a["user"], a["action"], a["target"]) for a in team["viewer"].activity(4)]
    assert lines == [("ada", "delete model", "renamed (#1)"), ("tom", "rename model", "#1"),
                     ("tom", "start train run", f"run #{run_id}"), ("lea", "save boxes", f"image #{image_id}")]
    assert team["admin"].run(run_id).user == "tom"


def test_passwords_are_argon2_hashes_and_wrong_ones_fail_alike(team):
    admin = team["admin"]
    with admin.connect() as conn:
        stored = conn.execute("SELECT password_hash FROM users WHERE name = 'lea'").fetchone()[0]
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert admin.authenticate("lea", PASSWORD) == User("lea", "labeler")
    assert admin.authenticate("lea", "wrong password") is None
    assert admin.authenticate("nobody", PASSWORD) is None
    assert admin.authenticate("lea", "x" * 100_000) is None
    assert stat.S_IMODE(os.stat(admin.db_path).st_mode) == 0o600


def test_session_tokens_end_with_a_new_password_or_a_removed_account(team):
    admin = team["admin"]
    token = admin.session_token(User("lea", "labeler"))
    assert admin.session_user(token) == User("lea", "labeler")
    assert admin.session_user(token.replace("lea|", "ada|", 1)) is None  # the signature covers the name
    assert admin.session_user(token[:-1] + ("0" if token[-1] != "0" else "1")) is None
    team["labeler"].set_password("lea", "another password")  # one's own password needs no admin
    assert admin.session_user(token) is None
    fresh = admin.session_token(User("lea", "labeler"))
    admin.remove_user("lea")
    assert admin.session_user(fresh) is None


def test_expired_session_is_refused(tmp_path):
    secret = accounts.session_secret(tmp_path)
    token = accounts.sign_session(secret, "ada", "stamp", seconds=-1)
    assert accounts.read_session(secret, token) is None
    assert accounts.read_session(secret, accounts.sign_session(secret, "ada", "stamp")) == ("ada", "stamp")


def test_session_secret_is_owner_only_and_kept(tmp_path):
    first = accounts.session_secret(tmp_path)
    assert stat.S_IMODE(os.stat(tmp_path / accounts.SECRET_FILE).st_mode) == 0o600
    assert accounts.session_secret(tmp_path) == first and len(first) == 32
    os.chmod(tmp_path / accounts.SECRET_FILE, 0o644)
    with pytest.raises(PermissionError, match="readable by others"):
        accounts.session_secret(tmp_path)


@pytest.mark.parametrize("name, role, password, message", [
    ("", "admin", PASSWORD, "user name"),
    ("1abc", "admin", PASSWORD, "user name"),
    ("a" * 65, "admin", PASSWORD, "user name"),
    ("bob;drop", "admin", PASSWORD, "user name"),
    ("bob", "root", PASSWORD, "role"),
    ("bob", "admin", "short", "password"),
    ("bob", "admin", "x" * 2000, "password"),
])
def test_bad_accounts_are_refused_with_one_line(tmp_path, name, role, password, message):
    store = Store(tmp_path)
    with pytest.raises(ValueError, match=message):
        store.add_user(name, role, password)
    assert not store.has_accounts()


def test_first_account_must_be_an_admin_and_the_last_admin_stays(tmp_path):
    store = Store(tmp_path, User("stranger", "viewer"))
    with pytest.raises(ValueError, match="the first account must be an admin's"):
        store.add_user("lea", "labeler", PASSWORD)  # someone must be able to manage the others
    store.add_user("ada", "admin", PASSWORD)
    admin = store.as_user(User("ada", "admin"))
    admin.add_user("lea", "labeler", PASSWORD)
    with pytest.raises(ValueError, match="last admin"):
        admin.remove_user("ada")
    with pytest.raises(ValueError, match="last admin"):
        admin.set_role("ada", "viewer")
    with pytest.raises(ValueError, match="exists already"):
        admin.add_user("LEA", "viewer", PASSWORD)  # names are case-insensitive
    assert [u["name"] for u in admin.users()] == ["ada", "lea"]


def test_a_job_acts_as_the_user_who_started_it(team):
    admin = team["admin"]
    assert admin.acting_for_run("tom") == User("tom", "trainer")
    assert admin.acting_for_run(None).role == "admin"
    admin.remove_user("tom")
    with pytest.raises(PermissionDenied, match="no longer has an account"):
        admin.acting_for_run("tom")


def test_hashing_cost_keeps_logins_usable():
    # Argon2id's default cost is deliberate (slow for a guesser); a login must still feel instant
    start = time.perf_counter()
    assert accounts.password_matches(accounts.hash_password(PASSWORD), PASSWORD)
    assert time.perf_counter() - start < 2.0


def test_log_out_everywhere_ends_every_token_of_that_account(team):
    admin = team["admin"]
    lea = User("lea", "labeler")
    laptop, phone = admin.session_token(lea), admin.session_token(lea)
    tom = admin.session_token(User("tom", "trainer"))
    team["labeler"].end_sessions("lea")
    assert admin.session_user(laptop) is None and admin.session_user(phone) is None
    assert admin.session_user(tom) == User("tom", "trainer")  # other accounts stay signed in
    assert admin.session_user(admin.session_token(lea)) == lea  # a new login works
    with pytest.raises(PermissionDenied):
        team["labeler"].end_sessions("tom")


@pytest.mark.parametrize("name", ["lea", "nobody"])  # unknown names lock alike: the lock tells nothing
def test_wrong_passwords_lock_a_name_for_a_while(team, name):
    admin = team["admin"]
    for _ in range(accounts.MAX_FAILURES):
        assert admin.authenticate(name, "wrong password") is None
    with pytest.raises(accounts.TooManyFailures, match="try again in 15 minutes"):
        admin.authenticate(name, PASSWORD)
    assert admin.authenticate("tom", PASSWORD) == User("tom", "trainer")  # other names are not locked
    with admin.connect() as conn:  # fifteen minutes later
        conn.execute("UPDATE login_failures SET last_at = last_at - ?", (accounts.LOCK_SECONDS + 1,))
    assert admin.authenticate(name, PASSWORD) == (User("lea", "labeler") if name == "lea" else None)


def test_a_right_password_clears_earlier_failures(team):
    admin = team["admin"]
    for _ in range(accounts.MAX_FAILURES - 1):
        admin.authenticate("lea", "wrong password")
    assert admin.authenticate("lea", PASSWORD) == User("lea", "labeler")
    for _ in range(accounts.MAX_FAILURES - 1):
        admin.authenticate("lea", "wrong password")
    assert admin.authenticate("lea", PASSWORD) == User("lea", "labeler")


def test_parallel_login_attempts_cannot_pass_the_lock_together(team):
    # each attempt is counted before its (slow) password check, so a burst gets MAX_FAILURES guesses
    from concurrent.futures import ThreadPoolExecutor

    def attempt(i: int) -> str:
        try:
            return "checked" if team["admin"].authenticate("ada", f"guess {i}") is None else "in"
        except accounts.TooManyFailures:
            return "locked"
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, range(16)))
    assert outcomes.count("checked") == accounts.MAX_FAILURES and outcomes.count("locked") == 16 - accounts.MAX_FAILURES


def test_a_new_password_unlocks_a_locked_name(team):
    for _ in range(accounts.MAX_FAILURES):
        team["admin"].authenticate("lea", "wrong password")
    team["admin"].set_password("lea", "a fresh password")
    assert team["admin"].authenticate("lea", "a fresh password") == User("lea", "labeler")


RUN_WRITES = [
    ("update_run", lambda s, r: s.update_run(r, status="queued", params={"device": "cpu", "evil": 1})),
    ("add_points", lambda s, r: s.add_points(r, [{"iteration": 1, "loss": 0.0}])),
    ("drop_points_after", lambda s, r: s.drop_points_after(r, 0)),
    ("take_run", lambda s, r: s.take_run(r, os.getpid(), lambda pid: False)),
    ("claim_device", lambda s, r: s.claim_device(r, "cpu", os.getpid(), lambda pid: False)),
    ("start_worker", lambda s, r: __import__("cowdetect.jobs", fromlist=["start_worker"]).start_worker(s, r)),
    ("set_setting", lambda s, r: s.set_setting("last_backup", '{"at": "forged"}')),
    ("record", lambda s, r: s.record("delete model", "#1", "forged")),
]


@pytest.mark.parametrize("what, call", RUN_WRITES, ids=[w[0] for w in RUN_WRITES])
@pytest.mark.parametrize("role", ["viewer", "labeler"])
def test_run_rows_settings_and_the_log_refuse_roles_below_them(team, what, call, role):
    run_id = create_run(team["trainer"], "train", {"device": "cpu"}, 10)
    before = (team["admin"].run(run_id), team["admin"].activity(), team["admin"].setting("last_backup"))
    with pytest.raises(PermissionDenied):
        call(team[role], run_id)
    assert (team["admin"].run(run_id), team["admin"].activity(), team["admin"].setting("last_backup")) == before


def test_any_page_may_mark_a_dead_run_interrupted(team):
    from cowdetect.jobs import mark_interrupted
    run_id = create_run(team["trainer"], "train", {"device": "cpu"}, 10)
    with team["admin"].connect() as conn:  # a worker that died: its pid is gone
        conn.execute("UPDATE runs SET status = 'running', pid = 2147483646 WHERE id = ?", (run_id,))
    assert mark_interrupted(team["viewer"]) == [run_id]
    assert team["viewer"].run(run_id).status == "interrupted"


def test_removing_or_demoting_an_account_stops_its_jobs(team):
    admin = team["admin"]
    admin.add_user("tim", "trainer", PASSWORD)
    tim = admin.as_user(User("tim", "trainer"))
    train, frames = create_run(tim, "train", {"device": "cpu"}, 10), create_run(tim, "frames", {"device": "io"}, 10)
    toms = create_run(team["trainer"], "train", {"device": "cpu", "other": 1}, 10)
    admin.set_role("tim", "labeler")  # may no longer train, may still import frames
    assert [admin.run(r).stop_requested for r in (train, frames, toms)] == [True, False, False]
    admin.remove_user("tim")
    assert [admin.run(r).stop_requested for r in (train, frames, toms)] == [True, True, False]


@pytest.mark.parametrize("name", ["x" * 65, "cow\nherd", "cow\x00", "\t"])
def test_class_names_are_short_and_printable(team, name):
    with pytest.raises(ValueError, match="class name"):
        team["admin"].add_class(name)
    assert team["admin"].classes() == ("cow",)
