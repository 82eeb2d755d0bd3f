"""bench peer's rounds: the implementations take turns, each round started by the other one than
the round before, and each implementation's rounds come back in its own row, in round order."""

from dataclasses import asdict

from peer_rounds import a_round

from harness.bench import peer
from harness.bench.peer import PeerSpec
from harness.precision.modes import get_precision


def test_each_round_starts_with_the_other_implementation(monkeypatch):
    calls: list[tuple[str, bool]] = []

    def run_task(task, mode, context, settings, system_malloc):
        calls.append((settings["impl"], settings["first_round"]))
        step = float(len(calls))  # the call's place in the run: which round a row holds
        return asdict(a_round(settings["impl"], [step]))

    monkeypatch.setattr(peer.launchers, "run_task", run_task)
    runs = peer._rounds(PeerSpec(rounds=3), get_precision("fp32"), None, [0], with_train=False)
    assert calls == [
        ("harness", True),
        ("hugging-face", True),
        ("hugging-face", False),
        ("harness", False),
        ("harness", False),
        ("hugging-face", False),
    ]
    assert list(runs) == ["harness", "hugging-face"]
    assert [r.step_times for r in runs["harness"]] == [[1.0], [4.0], [5.0]]
    assert [r.step_times for r in runs["hugging-face"]] == [[2.0], [3.0], [6.0]]
