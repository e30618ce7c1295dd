"""`ser.serving.malloc`: the service caps glibc's malloc arenas, and the switch turns it off."""

from __future__ import annotations

import platform

import pytest

from ser.serving.malloc import limit_arenas


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt arenas are glibc's")
def test_arenas_are_capped_on_glibc_and_left_alone_when_switched_off(monkeypatch):
    assert limit_arenas(2) is True
    monkeypatch.setenv("SER_MALLOC_ARENAS", "0")
    assert limit_arenas() is False
    monkeypatch.setenv("SER_MALLOC_ARENAS", "2")
    assert limit_arenas() is True
