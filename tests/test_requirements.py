"""The installed packages are the pinned ones: a resolver that silently picks another version is a bug."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import pytest

from conftest import ROOT


def pins() -> list[tuple[str, str]]:
    out = []
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if "==" in line:
                package, wanted = line.split("==")
                out.append((package.strip(), wanted.strip()))
    return out


@pytest.mark.parametrize("package, wanted", pins())
def test_installed_version_is_the_pinned_one(package, wanted):
    try:
        installed = version(package)
    except PackageNotFoundError:
        pytest.fail(f"{package} is pinned but not installed")
    # local builds (torch 2.14.1+cu…) carry a suffix after '+'
    assert installed.split("+")[0] == wanted, f"{package}: pinned {wanted}, installed {installed}"
