"""cowdetect's Streamlit app: a router only. Run: streamlit run app.py [-- --data-dir DIR]"""

import streamlit as st

st.set_page_config(page_title="cowdetect", page_icon="🐄", layout="wide")
pages = [
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("pages/train.py", title="Train", icon="🏋️"),
    st.Page("pages/models.py", title="Models", icon="🗂️"),
]
st.navigation(pages).run()
