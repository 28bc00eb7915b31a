"""Users (admins only): add accounts, change a role, reset a password, remove an account."""

import pandas as pd
import streamlit as st

import ui
from cowdetect.accounts import ROLES, PermissionDenied

st.title("Users")
store = ui.store()
st.caption("**viewer** reads everything · **labeler** + imports, labels, pre-labels · **trainer** + trains, "
           "evaluates, tracks, sets the active model · **admin** + users, deletions, backups, settings")
try:
    accounts = store.users()
except PermissionDenied as exc:
    st.error(str(exc))
    st.stop()
first = not accounts
state = st.session_state

with st.form("add_user", clear_on_submit=True):
    st.subheader("Add the first account: an admin" if first else "Add an account")
    c1, c2, c3, c4 = st.columns(4)
    name = c1.text_input("Name", key="new_user_name")
    role = c2.selectbox("Role", ["admin"] if first else ROLES, index=0 if first else ROLES.index("labeler"),
                        key="new_user_role")
    password = c3.text_input("Password (8 characters or more)", type="password", key="new_user_password")
    again = c4.text_input("Password again", type="password", key="new_user_again")
    add = st.form_submit_button("Add account", type="primary")
if add:
    try:
        if password != again:
            raise ValueError("the two passwords differ")
        store.add_user(name.strip(), role, password)
    except (ValueError, PermissionDenied) as exc:
        st.error(f"Not added: {exc}")
    else:
        if first:  # from now on everyone logs in, this session too
            state["auth_flash"] = ("success", f"Added {name.strip()} (admin). The app now asks everyone to log in: "
                                              f"log in as {name.strip()}.")
            st.rerun()
        ui.flash("users_flash", "success", f"Added {name.strip()} ({role}).")
        st.rerun()
if first:
    st.info("No accounts yet: the app runs without login for this machine only. Once an account exists everyone "
            "logs in, and `./run.sh app --network` can serve the team.")
    st.stop()

st.subheader("Accounts")
st.dataframe(pd.DataFrame(accounts, columns=["name", "role", "created_at"]), hide_index=True, width="stretch")


def act(action: str, name: str) -> None:
    """Button callback on the account the clicked page showed (its name is in the button's key)."""
    try:
        if action == "role":
            store.set_role(name, state[f"user_role-{name}"])
            done = f"{name} is now {state[f'user_role-{name}']}."
        elif action == "password":
            store.set_password(name, state["user_password"])
            done = f"Password of {name} reset: their sessions ended."
        else:
            store.remove_user(name)
            done = f"Removed {name}."
        ui.flash("users_flash", "success", done)
    except (ValueError, PermissionDenied) as exc:
        ui.flash("users_flash", "error", str(exc))
    state["user_password"], state["user_sure"] = "", False


names = [a["name"] for a in accounts]
chosen = st.selectbox("Account", names, key="user_chosen")
role_of = {a["name"]: a["role"] for a in accounts}[chosen]
c1, c2, c3 = st.columns(3)
c1.selectbox("Role", ROLES, index=ROLES.index(role_of), key=f"user_role-{chosen}")
c1.button("Set role", key=f"role-{chosen}", on_click=act, args=("role", chosen))
c2.text_input("New password", type="password", key="user_password")
c2.button("Reset password", key=f"password-{chosen}", on_click=act, args=("password", chosen))
c3.checkbox("Really remove", key="user_sure")
c3.button("Remove account", key=f"remove-{chosen}", disabled=not state["user_sure"], on_click=act,
          args=("remove", chosen))
ui.show_flash("users_flash")
