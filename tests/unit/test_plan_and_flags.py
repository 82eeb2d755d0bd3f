"""The plan a comparison runs, the flags generated from the configs, the torchrun command."""

import dataclasses
from pathlib import Path

import pytest

from harness.cli import build_parser
from harness.cli.flags import field_docs
from harness.errors import HarnessError
from harness.launch.ranks import RankLayout
from harness.plan.executor import _require_same_plan
from harness.plan.plan import CompareConfig, make_plan
from harness.plan.presets import get_preset
from harness.train.config import TrainConfig


def test_the_plan_interleaves_precisions_within_each_phase_and_repeat():
    cfg = CompareConfig(precisions="fp32,bf16", seeds=2, preset="smoke", backends="stock")
    plan = make_plan(cfg, get_preset("smoke"))
    assert [s.run_id for s in plan] == [
        "p1-fp32-r0", "p1-bf16-r0", "p2-fp32-r0", "p2-bf16-r0",
        "p1-fp32-r1", "p1-bf16-r1", "p2-fp32-r1", "p2-bf16-r1",
    ]  # fmt: skip
    assert plan[2].checkpoint_of == "p1-fp32-r0" and plan[0].checkpoint_of is None
    assert (plan[0].steps, plan[2].steps, plan[2].batch_size) == (20, 10, 4)  # the preset's
    run = plan[2].train_config(Path("data"), Path("out/runs"), get_preset("smoke"), compile=True)
    assert run.checkpoint == Path("out/runs/p1-fp32-r0/model_save") and run.model is None
    assert (run.seed, run.timing_warmup, run.compile, run.output) == (
        42,
        3,
        True,
        Path("out/runs/p2-fp32-r0"),
    )
    assert make_plan(dataclasses.replace(cfg, steps=7), get_preset("smoke"))[3].steps == 7


def test_the_default_backend_is_fused_and_stock_for_a_mode_with_bf16_weights():
    plan = make_plan(CompareConfig(precisions="fp32,bf16,bf16-pure", phases="1"), get_preset("smoke"))
    assert [(s.run_id, s.backend) for s in plan] == [
        ("p1-fp32-fused-r0", "fused"),
        ("p1-bf16-fused-r0", "fused"),
        ("p1-bf16-pure-r0", "stock"),  # fused keeps fp32 masters: it would refuse bf16 weights
    ]
    # named, a backend is what every mode runs on (the worker refuses what it cannot run)
    named = make_plan(
        CompareConfig(precisions="bf16-pure", phases="1", backends="fused"), get_preset("smoke")
    )
    assert [s.backend for s in named] == ["fused"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"precisions": "fp32,fp32"}, "--precisions fp32,fp32: expected distinct mode names"),
        ({"phases": "2"}, "--phases 2 needs phase 1 in the same plan"),
        ({"phases": "1,3"}, "--phases 1,3: expected 1, 2 or 1,2"),
        ({"phases": "one"}, "--phases one: expected 1, 2 or 1,2"),
        ({"seeds": 0}, "--seeds must be >= 1, got 0"),
    ],
)
def test_a_plan_that_cannot_run_is_refused_naming_the_flag(changes, message):
    with pytest.raises(HarnessError, match=message):
        make_plan(CompareConfig(**changes), get_preset("smoke"))


def test_resume_refuses_a_plan_whose_settings_changed(tmp_path):
    smoke = get_preset("smoke")
    saved = make_plan(CompareConfig(preset="smoke"), smoke)
    same = make_plan(CompareConfig(preset="smoke"), smoke)
    _require_same_plan(tmp_path, saved, same)
    longer = make_plan(CompareConfig(preset="smoke", steps=50), smoke)
    with pytest.raises(HarnessError, match=r"run p1-fp32-fused-r0 has steps 50, but .*plan.json planned 20"):
        _require_same_plan(tmp_path, saved, longer)
    with pytest.raises(HarnessError, match="plans other runs"):
        _require_same_plan(
            tmp_path, saved, make_plan(CompareConfig(preset="smoke", precisions="fp32"), smoke)
        )
    with pytest.raises(HarnessError, match="--timeout must be > 0 seconds"):
        CompareConfig(timeout=0).workload()
    with pytest.raises(HarnessError, match="--roofline-size must be >= 64, got 8"):
        CompareConfig(roofline_size=8).workload()


def test_every_train_config_field_is_a_flag_with_its_default_and_docstring():
    parser = build_parser()
    args = parser.parse_args(
        ["train", "--phase", "1", "--precision", "fp32", "--dataset", "d", "--output", "o"]
    )
    docs = field_docs(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        assert f.name in docs, f"{f.name} has no docstring, so its flag has no help"
        if f.default is not dataclasses.MISSING:
            assert getattr(args, f.name) == f.default, f.name
    assert isinstance(args.dataset, Path) and args.batch_size is None and args.compile is False
    help_text = parser._subparsers._group_actions[0].choices["train"].format_help()
    assert "Optimizer steps to run (default 100)." in help_text
    assert "--nproc-per-node" in help_text and "--instances" in help_text
    compare = parser.parse_args(["compare", "--preset", "smoke", "--compile"])
    assert (compare.seeds, compare.compile, compare.nproc_per_node) == (1, True, 1)
    assert (compare.equivalence_margin, compare.target_accuracy) == (3.0, None)
    assert not hasattr(compare, "seed")  # the plan sets each run's seed


def test_the_torchrun_command_of_each_rendezvous():
    local = RankLayout(nproc_per_node=2).torchrun(Path("/tmp/job.json"))
    assert local[1:3] == ["-m", "torch.distributed.run"] and "--standalone" in local
    assert local[-3:] == ["-m", "harness.launch.rank_entry", "/tmp/job.json"]
    c10d = RankLayout(2, 3, rdzv_endpoint="node0:29400", rdzv_id="run-7").torchrun(Path("job.json"))
    assert [a for a in c10d if a.startswith(("--rdzv", "--nnodes", "--nproc"))] == [
        "--nproc-per-node=2",
        "--nnodes=3",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=node0:29400",
        "--rdzv-id=run-7",
    ]
    static = RankLayout(1, 2, node_rank=1, master_addr="10.0.0.1").torchrun(Path("job.json"))
    assert "--node-rank=1" in static and "--master-addr=10.0.0.1" in static and "--standalone" not in static
