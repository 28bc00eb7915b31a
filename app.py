"""cowdetect's Streamlit app: a router only. Run: streamlit run app.py [-- --data-dir DIR]"""

import streamlit as st

st.set_page_config(page_title="cowdetect", page_icon="🐄", layout="wide")
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
st.navigation(pages).run()
