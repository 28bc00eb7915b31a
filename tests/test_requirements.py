"""The installed packages are the pinned ones: a resolver that silently picks another version is a bug."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import pytest

from conftest import ROOT


def pins(names: tuple[str, ...] = ("requirements.txt", "requirements-dev.txt")) -> list[tuple[str, str]]:
    out = []
    for name in names:
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


@pytest.mark.parametrize("package, wanted", pins(("requirements-ray.txt",)))
def test_ray_extra_is_the_pinned_one_where_installed(package, wanted):
    """The optional Ray extra: skipped where it is not installed, except where COWDETECT_REQUIRE_RAY=1 (CI)."""
    import os

    try:
        installed = version(package)
    except PackageNotFoundError:
        if os.environ.get("COWDETECT_REQUIRE_RAY") == "1":
            pytest.fail(f"{package} is pinned in requirements-ray.txt but not installed")
        pytest.skip(f"{package}: the Ray extra is not installed (pip install -r requirements-ray.txt)")
    assert installed == wanted, f"{package}: pinned {wanted}, installed {installed}"
