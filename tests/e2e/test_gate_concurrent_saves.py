"""`--save-baseline` of one name from two processes at once (issue 35): each save stages in a
folder of its own and the swap takes turns, so every save succeeds and the baseline left is one
save's, whole. Two real processes, since the lock between them is the kernel's."""

import json
import subprocess
import sys
import time

from harness.gate.baselines import resolve
from harness.gate.figures import load_judged

SAVES = 150
"""Per process: with one staging folder shared, 300 such saves failed 268 times."""

HAMMER = """
import sys, time
from pathlib import Path
from harness.gate.baselines import save

current, baselines, start = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))  # both begin together, past their imports
for _ in range(int(sys.argv[4])):
    save("main", current, baselines)
"""


def test_two_processes_saving_one_baseline_take_turns(runsets):
    saved = runsets / "saved"
    start = time.time() + 5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER, str(runsets / source), str(saved), str(start), str(SAVES)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for source in ("baseline", "again")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert [p.name for p in saved.iterdir()] == ["main"]  # no staging or old folder left behind
    info = json.loads((saved / "main" / "baseline.json").read_text())
    source = runsets / info["source"].rsplit("/", 1)[-1]
    for table in ("runs.csv", "steps.csv", "machine.json"):  # one save's files, not a mix
        assert (saved / "main" / table).read_text() == (source / table).read_text()
    load_judged(resolve("main", saved))
