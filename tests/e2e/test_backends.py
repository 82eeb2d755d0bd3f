"""--backend ipex where IPEX imports: ipex.optimize gets the model and optimizer, the run records
the backend, and compare sets it beside stock PyTorch (the refusal where IPEX is missing:
tests/unit/test_refusals.py).

IPEX itself needs torch 2.8 and cannot be installed beside the pinned torch 2.13, so the wiring is
tested against a stand-in package that records how it was called.
"""

import json
import os

from harness_cli import launch, result

from harness.results.tables import read_runs

STAND_IN = """\
import json, os
__version__ = "2.8.0+stand-in"

def optimize(model, optimizer=None, dtype=None, **kwargs):
    with open(os.environ["IPEX_CALLS"], "a") as calls:
        calls.write(json.dumps({"dtype": str(dtype), "optimizer": type(optimizer).__name__,
                                "model": type(model).__name__}) + "\\n")
    return model, optimizer
"""


def test_compare_sets_ipex_beside_stock(capfd, monkeypatch, synth_dir, tmp_path):
    site = tmp_path / "site" / "intel_extension_for_pytorch"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text(STAND_IN)
    calls = tmp_path / "calls.jsonl"
    # the stand-in imports in this process (the parent checks the backend) and in its workers
    monkeypatch.syspath_prepend(str(site.parent))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(site.parent), os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.setenv("IPEX_CALLS", str(calls))
    out = tmp_path / "cmp"
    proc = launch(
        capfd,
        "compare",
        "--preset",
        "smoke",
        "--phases",
        1,
        "--precisions",
        "fp32",
        "--backends",
        "stock,ipex",
        "--steps",
        6,
        "--roofline-size",  # MFU's peak, measured once a session: at 4096 it takes a minute
        512,
        "--dataset",
        synth_dir,
        "--output",
        out,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = read_runs(out / "runs.csv")
    assert list(runs["run_id"]) == ["p1-fp32-r0", "p1-fp32-ipex-r0"]
    assert list(runs["backend"]) == ["stock", "ipex"] and set(runs["status"]) == {"ok"}
    assert runs["speedup_vs_fp32"].notna().all()  # ipex fp32 against stock fp32
    assert [json.loads(line) for line in calls.read_text().splitlines()] == [
        {"dtype": "torch.float32", "optimizer": "Lamb", "model": "BertForPreTraining"}
    ]
    r = result(out / "runs" / "p1-fp32-ipex-r0")
    assert (r.backend, r.backend_version) == ("ipex", "2.8.0+stand-in")
    assert result(out / "runs" / "p1-fp32-r0").backend == "stock"
    assert "fp32+ipex" in (out / "report.html").read_text()
