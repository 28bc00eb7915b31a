import os
import stat

import pytest

from cowdetect.files import atomic_write, atomic_write_bytes


def test_atomic_write_sets_normal_permissions(tmp_path):
    path = atomic_write_bytes(tmp_path / "sub" / "a.bin", b"hello")
    assert path.read_bytes() == b"hello"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    target = atomic_write_bytes(tmp_path / "a.pt", b"old")

    def boom(tmp):
        open(tmp, "wb").write(b"half")
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, boom)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.pt"]
