"""A hand-made bench peer round (one implementation's timed steps in one process) for the tests
of the rounds and of the rows and table made from them."""

from harness.bench.peer import PeerRound
from harness.results.time_split import TimeSplit


def a_round(impl: str, step_times: list[float], split: TimeSplit | None = None) -> PeerRound:
    return PeerRound(
        impl=impl,
        backend="fused" if impl == "harness" else "transformers",
        precision="bf16",
        model="bert-large",
        batch_size=8,
        seq_len=128,
        threads=16,
        fp32_gemm="onednn",
        step_times=step_times,
        flops=3e13,
        peak_rss_gib=9.0,
        top_operators=[],
        time_split=split,
    )
