"""Building the fused kernels: the refusal without a compiler, the cache's key."""

import os
import subprocess
import sys

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


def test_another_march_builds_apart_and_a_malformed_one_is_refused_in_one_line(monkeypatch):
    monkeypatch.delenv(kernels.MARCH_ENV, raising=False)
    native = kernels.build_key("machine A")
    assert "-march=native" in kernels.flags()
    monkeypatch.setenv(kernels.MARCH_ENV, "x86-64-v3")
    assert "-march=x86-64-v3" in kernels.flags() and "-march=native" not in kernels.flags()
    assert kernels.build_key("machine A") != native
    monkeypatch.setenv(kernels.MARCH_ENV, "x86-64-v3 -O0")
    with pytest.raises(HarnessError, match=r"^HARNESS_KERNEL_MARCH='x86-64-v3 -O0': expected a -march name"):
        kernels.build_key("machine A")


def test_a_second_load_uses_the_cache(kernels_home, machine_key):
    """The suite's build (kernels_home) is found by its key in a new process: nothing is compiled
    again. (In this process cpp_extension would version a second folder's build of the same name.)"""
    where = kernels_home / "kernels" / kernels.build_key(machine_key)
    (build,) = where.glob("*.so")
    before = build.stat().st_mtime_ns
    done = subprocess.run(
        [sys.executable, "-c", f"from harness import kernels; print(kernels.load({machine_key!r}).__file__)"],
        env={**os.environ, "HARNESS_HOME": str(kernels_home)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(build) and "building" not in done.stderr
    assert build.stat().st_mtime_ns == before


def test_a_failed_build_in_the_child_is_the_parents_one_line_refusal(monkeypatch, tmp_path):
    """kernels.build compiles in a child process (python -m harness.kernels); what the child
    refuses, the parent raises as its own refusal."""
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(kernels.MARCH_ENV, "no-such-cpu")
    with pytest.raises(HarnessError, match=r"^--backend fused: building the kernels in \S+ failed"):
        kernels.build("machine A")


def test_the_build_child_without_its_machine_key_is_a_one_line_usage_refusal():
    done = subprocess.run([sys.executable, "-m", "harness.kernels"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stdout.startswith("usage: python -m harness.kernels MACHINE_KEY")
    assert done.stdout.count("\n") == 1 and done.stderr == ""
