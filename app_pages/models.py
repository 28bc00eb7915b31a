"""Models: the trained versions; set one active, rename or delete; the labeling effort each saved;
any model as one ONNX file for edge devices."""

import streamlit as st

import ui
from cowdetect.accounts import PermissionDenied

st.title("Models")
store = ui.store()
st.markdown(ui.active_model_note(store))
versions = store.models()
if not versions:
    st.info("No trained version yet: start one on the Train page.")
    ui.effort_section(store)
    ui.export_section(store)
    st.stop()
st.dataframe(ui.model_table(versions), hide_index=True, width="stretch")

labels = {m.id: m.label for m in reversed(versions)}
model_id = st.selectbox("Version", list(labels), format_func=labels.get, key="version")
state = st.session_state


def act(action: str, model_id: int, label: str) -> None:
    """Button callback on the version the clicked page showed (its id is in the button's key):
    a click that Streamlit delivers to two runs acts on that version once, never on the next one."""
    try:
        if action == "active":
            store.set_active_model(model_id)
            done = f"{label} is now the active model."
        elif action == "rename":
            if not state["new_name"].strip():
                raise ValueError("type the new name first")
            renamed = store.rename_model(model_id, state["new_name"].strip())
            done = f"Renamed {label} to {renamed.label}."
            state["new_name"] = ""
        else:
            store.delete_model(model_id)
            state["sure"] = False  # the next delete asks again
            done = f"Deleted {label}."
        ui.flash("models_flash", "success", done)
    except (ValueError, PermissionDenied) as exc:  # the library checks the role too
        ui.flash("models_flash", "error", str(exc))


c1, c2, c3 = st.columns(3)
args = (model_id, labels[model_id])
if store.user.may("manage_models"):  # only a courtesy: the store refuses the others
    c1.button("Set active", type="primary", key=f"active-{model_id}", on_click=act, args=("active", *args))
    c2.text_input("New name", key="new_name")
    c2.button("Rename", key=f"rename-{model_id}", on_click=act, args=("rename", *args))
else:
    c1.caption(f"Setting the active model and renaming need the trainer role; you are a {store.user.role}.")
if store.user.may("delete"):
    c3.checkbox("Really delete", key="sure")
    c3.button("Delete", key=f"delete-{model_id}", disabled=not state["sure"], on_click=act, args=("delete", *args))
ui.show_flash("models_flash")
ui.effort_section(store)
ui.export_section(store)
