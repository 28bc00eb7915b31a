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
state = st.session_state


def act(action: str, version: str) -> None:
    """Button callback on the version the clicked page showed (its name is in the button's key):
    a click that Streamlit delivers to two runs acts on that version once, never on the next one."""
    try:
        if action == "active":
            store.set_active_model(version)
            done = f"{version} is now the active model."
        elif action == "rename":
            if not state["new_name"].strip():
                raise ValueError("type the new name first")
            store.rename_model(version, state["new_name"])
            done = f"Renamed {version} to {state['new_name']}."
            state["new_name"] = ""
        else:
            store.delete_model(version)
            state["sure"] = False  # the next delete asks again
            done = f"Deleted {version}."
        state["models_flash"] = ("success", done)
    except ValueError as exc:
        state["models_flash"] = ("error", str(exc))


c1, c2, c3 = st.columns(3)
c1.button("Set active", type="primary", key=f"active-{name}", on_click=act, args=("active", name))
c2.text_input("New name", key="new_name")
c2.button("Rename", key=f"rename-{name}", on_click=act, args=("rename", name))
c3.checkbox("Really delete", key="sure")
c3.button("Delete", key=f"delete-{name}", disabled=not state["sure"], on_click=act, args=("delete", name))
if "models_flash" in state:
    kind, text = state.pop("models_flash")
    getattr(st, kind)(text)
