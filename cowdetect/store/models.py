"""Model versions: a row each, and a checkpoint file named by the row's id (never by its name)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any, Sequence

from .base import StoreBase
from .rows import ModelRecord, model_row


class ModelsMixin(StoreBase):
    """Stored model versions. Look one up by id (:meth:`model`) or by name (:meth:`model_by_name`);
    a user's spec ('active', '#3', 'cow-v2', ...) goes through :func:`cowdetect.models.resolve`."""

    def _model(self, row: sqlite3.Row) -> ModelRecord:
        return model_row(row, self.inside)

    def add_model(self, name: str, architecture: str, classes: Sequence[str], checkpoint: str | Path,
                  parent_id: int | None = None, params: dict[str, Any] | None = None,
                  unique: bool = False) -> ModelRecord:
        """Register a model version: the checkpoint file is copied to ``models/by-id/ID.pt``.

        Files are named by id, so renaming a version can never make a later version with the
        old name overwrite its weights. ``unique``: a taken name gets ``-2``, ``-3``... (chosen
        under the write lock, so two runs finishing together cannot both take it); otherwise a
        taken name is refused. All or nothing: on error no row and no file remain.
        """
        from ..models import check_model_name

        self.require("train")  # type: ignore[attr-defined]
        check_model_name(name)
        source = Path(checkpoint)
        if not source.is_file():
            raise ValueError(f"checkpoint: no file at {source}")
        with self.write_lock() as conn:
            taken = {r[0] for r in conn.execute("SELECT name FROM models")}
            if name in taken and not unique:
                raise ValueError(f"model name {name!r} is taken; choose another")
            name = _free_name(name, taken)
            cur = conn.execute("INSERT INTO models(name, architecture, classes, checkpoint, parent_id, params) "
                               "VALUES (?,?,?,'',?,?)", (name, architecture, json.dumps(list(classes)), parent_id,
                                                         json.dumps(params or {})))
            model_id = int(cur.lastrowid)  # type: ignore[arg-type]
            rel = Path("models") / "by-id" / f"{model_id}.pt"
            target = self.inside(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".pt.partial")
            try:
                shutil.copyfile(source, partial)
                partial.replace(target)
                conn.execute("UPDATE models SET checkpoint = ? WHERE id = ?", (rel.as_posix(), model_id))
            except BaseException:
                partial.unlink(missing_ok=True)
                target.unlink(missing_ok=True)
                raise
            row = conn.execute("SELECT * FROM models WHERE id = ?", (model_id,)).fetchone()
            self._log(conn, "add model", f"#{model_id} {name}", architecture)  # type: ignore[attr-defined]
        return self._model(row)

    def models(self) -> list[ModelRecord]:
        """All model versions, oldest first."""
        with self.connect() as conn:
            return [self._model(r) for r in conn.execute("SELECT * FROM models ORDER BY id")]

    def model(self, model_id: int) -> ModelRecord:
        """The version with this id; ValueError lists the stored ids and names."""
        if not isinstance(model_id, int) or isinstance(model_id, bool):
            raise ValueError(f"model id: expected a whole number, got {model_id!r}")
        row = self._one("SELECT * FROM models WHERE id = ?", (model_id,))
        if row is None:
            raise ValueError(f"model: no version with id {model_id}; stored versions: {self._listing()}")
        return self._model(row)

    def model_by_name(self, name: str) -> ModelRecord:
        """The version called ``name``; ValueError lists the stored ids and names."""
        row = self._one("SELECT * FROM models WHERE name = ?", (str(name),))
        if row is None:
            raise ValueError(f"model: no version called {name!r}; stored versions: {self._listing()}")
        return self._model(row)

    def _listing(self) -> str:
        return ", ".join(m.label for m in self.models()) or "none"

    def active_model(self) -> ModelRecord | None:
        """The version set active for prediction and tracking, else the newest, else None."""
        row = self._one("SELECT * FROM models ORDER BY active DESC, id DESC LIMIT 1")
        return self._model(row) if row is not None else None

    def set_active_model(self, model_id: int) -> ModelRecord:
        """Make one version the active model."""
        self.require("manage_models")  # type: ignore[attr-defined]
        record = self.model(model_id)
        with self.connect() as conn:
            conn.execute("UPDATE models SET active = (id = ?)", (record.id,))
            self._log(conn, "set active model", record.label, "")  # type: ignore[attr-defined]
        return self.model(record.id)

    def rename_model(self, model_id: int, new_name: str) -> ModelRecord:
        """Rename a version (its checkpoint file is named by id and stays where it is)."""
        from ..models import check_model_name

        self.require("manage_models")  # type: ignore[attr-defined]
        record = self.model(model_id)
        check_model_name(new_name)
        with self.write_lock() as conn:
            if conn.execute("SELECT 1 FROM models WHERE name = ? AND id != ?", (new_name, record.id)).fetchone():
                raise ValueError(f"model name {new_name!r} is taken; choose another")
            conn.execute("UPDATE models SET name = ? WHERE id = ?", (new_name, record.id))
            self._log(conn, "rename model", f"#{record.id}", f"{record.name} -> {new_name}")  # type: ignore[attr-defined]
        return self.model(record.id)

    def delete_model(self, model_id: int) -> None:
        """Delete a version and its checkpoint file; its children keep working (parent set to none).
        Ids are never reused, so nothing can name or overwrite the deleted version's file later."""
        self.require("delete")  # type: ignore[attr-defined]
        record = self.model(model_id)
        with self.write_lock() as conn:
            conn.execute("DELETE FROM models WHERE id = ?", (record.id,))
            self._log(conn, "delete model", record.label, "")  # type: ignore[attr-defined]
            record.checkpoint.unlink(missing_ok=True)



def _free_name(stem: str, taken: set[str]) -> str:
    """``stem``, or ``stem-2``, ``stem-3``... whichever is not taken (the stem shortened to stay
    within the 100 characters a name may have)."""
    name, n = stem, 1
    while name in taken:
        n += 1
        name = f"{stem[:100 - len(str(n)) - 1]}-{n}"
    return name
