"""Models: the trained versions; set one active, rename or delete."""

import pandas as pd
import streamlit as st

import ui

st.title("Models")
store = ui.store()
st.markdown(ui.active_model_note(store))
versions = store.models()
if not versions:
    st.info("No trained version yet: start one on the Train page.")
    st.stop()
active = store.active_model()
st.dataframe(pd.DataFrame([{
    "active": "✅" if active and m.id == active.id else "", "name": m.name, "architecture": m.architecture,
    "parent": next((p.name for p in versions if p.id == m.parent_id), ""), "iterations": m.params.get("iterations"),
    "test mAP50 before → after": (f"{m.params['before']['map_50']:.3f} → {m.params['after']['map_50']:.3f}"
                                  if m.params.get("before") and m.params.get("after") else ""),
    "best val mAP50": m.params.get("best_val_map_50"), "seconds": m.params.get("seconds"),
    "device": m.params.get("device"), "created": m.created_at} for m in versions]),
    hide_index=True, width="stretch")

name = st.selectbox("Version", [m.name for m in reversed(versions)])
c1, c2, c3 = st.columns(3)
if c1.button("Set active", type="primary"):
    store.set_active_model(name)
    st.rerun()
new_name = c2.text_input("New name", key="new_name")
if c2.button("Rename") and new_name:
    try:
        store.rename_model(name, new_name)
        st.rerun()
    except ValueError as exc:
        st.error(str(exc))
sure = c3.checkbox("Really delete", key="sure")
if c3.button("Delete", disabled=not sure):
    store.delete_model(name)
    st.rerun()
