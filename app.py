"""cowdetect's Streamlit app: a router only. Run: streamlit run app.py [-- --data-dir DIR]

Who may see which page: with accounts in the data folder, every page answers with the login form
until someone logs in (then the page asked for opens); the Users page is for admins. What each
role may do is checked by the library itself.
"""

import streamlit as st

import ui
from cowdetect.accounts import PermissionDenied

st.set_page_config(page_title="cowdetect", page_icon="🐄", layout="wide")
base = ui.base_store()
user = ui.signed_in(base)  # refuses a network app without accounts; None: nobody logged in here
pages = [
    st.Page("app_pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("app_pages/label.py", title="Label", icon="✏️"),
    st.Page("app_pages/data.py", title="Data", icon="📦"),
    st.Page("app_pages/predictions.py", title="Predictions", icon="🔍"),
    st.Page("app_pages/train.py", title="Train", icon="🏋️"),
    st.Page("app_pages/evaluate.py", title="Evaluate", icon="📊"),
    st.Page("app_pages/models.py", title="Models", icon="🗂️"),
    st.Page("app_pages/track.py", title="Track", icon="🎥"),
]
if user is None or user.may("users"):
    pages.append(st.Page("app_pages/users.py", title="Users", icon="👥"))
if user is None:  # the page asked for is known (a deep link is kept) but does not run
    st.navigation(pages, position="hidden")
    ui.login_form(base)
    st.stop()
ui.account_sidebar(base, user)
try:
    st.navigation(pages).run()
except PermissionDenied as exc:  # a page that forgot to catch one: still one line, never a traceback
    st.error(str(exc))
