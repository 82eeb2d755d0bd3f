"""Several ranks through torchrun: the same training as one rank with the global batch, data
read once, results written by rank 0 alone; instances side by side."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from harness_cli import launch, metrics, result

from harness.models import NAMED_CONFIGS

STEPS = 30


def train(capfd, synth_dir, out, config, *extra):
    return launch(
        capfd,
        "train",
        "--phase",
        1,
        "--precision",
        "fp32",
        "--model",
        config,
        "--dataset",
        synth_dir,
        "--output",
        out,
        "--steps",
        STEPS,
        "--learning-rate",
        1e-2,
        "--timing-warmup",
        2,
        "--eval-examples",
        16,
        "--shuffle-buffer",
        0,
        "--log-every",
        10,
        *extra,
    )


def test_two_ranks_of_four_train_like_one_rank_of_eight(capfd, synth_dir, tmp_path):
    # Without dropout and without the shuffle buffer, the only differences left are the order of
    # floating-point sums: the global batch of both layouts holds the same examples.
    config = tmp_path / "bert_config.json"
    tiny = NAMED_CONFIGS["bert-tiny"].to_hf_dict()
    config.write_text(json.dumps({**tiny, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}))
    one = train(capfd, synth_dir, tmp_path / "one", config, "--batch-size", 8)
    assert one.returncode == 0, one.stderr[-3000:]
    two = train(capfd, synth_dir, tmp_path / "two", config, "--batch-size", 4, "--nproc-per-node", 2)
    assert two.returncode == 0, two.stderr[-3000:]

    steps_one, _ = metrics(tmp_path / "one")
    steps_two, _ = metrics(tmp_path / "two")
    assert [s["step"] for s in steps_two] == list(range(1, STEPS + 1))  # rank 0 alone wrote
    loss_one = np.array([s["loss"] for s in steps_one])
    loss_two = np.array([s["loss"] for s in steps_two])
    np.testing.assert_allclose(loss_two, loss_one, rtol=1e-5)  # measured: 2e-7
    assert loss_two[-5:].mean() < loss_two[:5].mean() - 0.5  # and it did learn

    r = result(tmp_path / "two")
    layout = (r.world_size, r.batch_size, r.batch_size_per_rank, r.dist_backend)
    assert layout == (2, 8, 4, "gloo")
    assert r.threads == 1 and len(r.cores) == 1 and set(r.cores) < set(r.node_cores)
    # throughput counts both ranks' sequences
    assert steps_two[-1]["seq_per_s"] * steps_two[-1]["step_time_s"] == pytest.approx(8.0)


def test_two_instances_on_disjoint_cores_add_up(capfd, synth_dir, tmp_path):
    out = tmp_path / "inst"
    proc = launch(
        capfd,
        "train",
        "--phase",
        1,
        "--precision",
        "fp32",
        "--model",
        "bert-tiny",
        "--dataset",
        synth_dir,
        "--output",
        out,
        "--steps",
        8,
        "--timing-warmup",
        2,
        "--eval-examples",
        8,
        "--instances",
        2,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    total, a, b = result(out), result(out / "instance-0"), result(out / "instance-1")
    assert (total.status, total.instances) == ("ok", 2)
    assert set(a.cores).isdisjoint(b.cores) and a.threads == b.threads == 1
    assert a.config["seed"] != b.config["seed"]  # independent copies, not the same run twice
    steps, evals = metrics(out)
    first = [metrics(out / f"instance-{i}")[0][0]["seq_per_s"] for i in (0, 1)]
    assert len(steps) == 8 and steps[0]["seq_per_s"] == pytest.approx(sum(first)) and len(evals) == 1
    # the aggregate's figures are those of its summed steps, computed as for any run
    timed = [s["seq_per_s"] for s in steps if s["step"] not in total.cold_steps]
    assert total.throughput_seq_per_s == pytest.approx(np.median(timed))
    assert total.throughput_p10 == pytest.approx(np.percentile(timed, 10))
    assert (out / "model_save" / "config.json").is_file()  # instance 0's, for a phase 2 to continue


def test_two_nodes_meet_through_a_static_rendezvous(synth_dir, tmp_path):
    # Two "nodes" on this machine, each a `harness train` with its own --node-rank and core,
    # meeting at node 0's address on the loopback, as two hosts would at node 0's.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    common = [
        "train",
        "--phase",
        1,
        "--precision",
        "fp32",
        "--model",
        "bert-tiny",
        "--dataset",
        synth_dir,
        "--steps",
        6,
        "--batch-size",
        4,
        "--eval-examples",
        8,
        "--nnodes",
        2,
        "--nproc-per-node",
        1,
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        port,
    ]
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_FAULT"}
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "harness",
                *map(str, common),
                "--node-rank",
                str(rank),
                "--cores",
                str(rank),
                "--output",
                str(tmp_path / f"node{rank}"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    r = result(tmp_path / "node0")
    assert (r.world_size, r.batch_size, r.status) == (2, 8, "ok")
    assert not (tmp_path / "node1" / "result.json").exists()  # global rank 0 alone writes
