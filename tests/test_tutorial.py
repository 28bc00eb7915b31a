"""The package docstring is the tutorial: it must run as written."""

import textwrap

import cowdetect


def test_docstring_tutorial_runs(tmp_path, monkeypatch):
    # the tutorial is the docstring's indented block
    code = textwrap.dedent("\n".join(line for line in cowdetect.__doc__.splitlines()
                                      if line.startswith("    ") or not line.strip()))
    assert "DetectorBox" in code and "train" in code and "evaluate" in code
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "cowdetect tutorial", "exec"), {})
    assert (tmp_path / "data" / "models" / "tutorial.pt").is_file()
    assert cowdetect.DetectorBox.load(tmp_path / "data" / "models" / "tutorial.pt").classes == ("cow",)
    assert (tmp_path / "tracked.mp4").stat().st_size > 0 and (tmp_path / "tracks.txt").is_file()
