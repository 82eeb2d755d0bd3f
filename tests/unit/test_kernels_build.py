"""Building the fused kernels: the refusal without a compiler, the cache's key."""

import pytest

from harness import kernels
from harness.errors import HarnessError
from harness.train.backends import check_available


def test_fused_is_refused_in_one_line_without_a_compiler(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-c++")
    with pytest.raises(HarnessError, match=r"^--backend fused: no C\+\+ compiler \(no-such-c\+\+\) on PATH"):
        check_available("fused")


def test_the_cache_key_follows_the_machine_and_the_sources(monkeypatch, tmp_path):
    here = kernels.build_key("machine A")
    assert kernels.build_key("machine A") == here
    assert kernels.build_key("machine B") != here
    changed = tmp_path / "lamb.cpp"
    changed.write_text(kernels.SOURCES[0].read_text() + "\n// changed\n")
    monkeypatch.setattr(kernels, "SOURCES", [changed])
    assert kernels.build_key("machine A") != here


def test_a_second_load_uses_the_cache(kernels_home, monkeypatch):
    """The suite's build (kernels_home) is found by its key: nothing is compiled again."""
    from conftest import KERNELS_KEY

    monkeypatch.setenv("HARNESS_HOME", str(kernels_home))
    where = kernels_home / "kernels" / kernels.build_key(KERNELS_KEY)
    (build,) = where.glob("*.so")
    before = build.stat().st_mtime_ns
    # past the in-process cache: through cpp_extension, which would rebuild a stale build
    assert kernels.compiled.__wrapped__(where).__file__ == str(build)
    assert build.stat().st_mtime_ns == before
