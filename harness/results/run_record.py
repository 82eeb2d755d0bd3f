"""A run's result.json as a type: what every run records, then the figures of what it did.

A run that stopped before its first step (refused by the census, failed while loading) has
only the first group and its ISA; the figures default to None (or empty) for it.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from harness.results.records import Status


@dataclass
class RunRecord:
    # What every run records (harness.train.result.RunResult)
    status: Status
    error: str | None
    phase: int
    precision: str
    steps: int
    """Steps planned; steps_completed says how many ran."""
    valid: bool
    """False for an invalid run: the kernels that ran are not those its mode promises."""
    invalid_reason: str | None
    precision_mode: dict[str, Any]
    """The PrecisionMode the run ran, as its fields."""
    isa_env: dict[str, str | None]
    """The ISA caps in the worker's environment (ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS...)."""
    malloc_env: dict[str, str]
    cores: list[int]
    threads: int
    """With several ranks: rank 0's threads and cores; batch_size is the global batch."""
    world_size: int
    dist_backend: str | None
    batch_size_per_rank: int
    node_cores: list[int]
    cpu_model: str
    host: str
    pid: int
    started_at: str
    wall_time_s: float
    peak_rss_gib: float
    """Rank 0's peak resident memory (ru_maxrss), model and data included."""
    versions: dict[str, str]
    config: dict[str, Any]
    """The TrainConfig's fields."""
    preload: list[dict[str, Any]] = field(default_factory=list)
    """Each library in malloc_env's LD_PRELOAD and whether the worker had it mapped: `loaded`, the
    `mapped` path, or a `note` why not (harness.launch.environment.preloaded)."""

    # The ISA, known before the first step (harness.train.hooks.KernelCensus)
    isa_cap: str | None = None
    isa_verified: str | None = None
    """The ISA oneDNN reported for itself (its verbose `info,cpu,isa:` line)."""
    mkl_isa: str | None = None
    emulated: bool = False
    gemm_isa_expected: str | None = None
    fp32_gemm: str | None = None
    """The library the run's fp32 GEMMs went to, mkl or onednn (harness.precision.gemm_route)."""
    fp32_gemm_reason: str | None = None

    # The kernel census of one timed step
    kernel_census: list[dict[str, Any]] = field(default_factory=list)
    gemm_isa_share: dict[str, float] = field(default_factory=dict)
    gemm_isa: str | None = None
    """The ISA that ran most of the GEMM time."""
    amx_gemm_share: float | None = None
    """The share of GEMM time computed on AMX's tiles (harness.precision.census.Entry.amx_tiles)."""
    kernels: list[str] = field(default_factory=list)
    amx_used: bool | None = None
    """A GEMM computed on AMX's tiles; an AMX level in a kernel's name alone does not count."""
    census_step: int | None = None
    time_split: dict[str, Any] | None = None
    """Where the census step's time went (harness.results.time_split.TimeSplit)."""

    # What the data and model were
    model_config: dict[str, Any] | None = None
    seq_len: int | None = None
    max_predictions: int | None = None
    train_files: list[str] = field(default_factory=list)
    eval_source: str | None = None
    data_fingerprint: str | None = None
    """harness.datasets.mlcommons.PhaseData.fingerprint: a resumed run refuses other data."""
    parameters: int | None = None
    backend: str = "stock"
    backend_version: str | None = None
    bf16_weights: bool | None = None
    """fused or ipex under bf16 autocast: the GEMMs' weights were bf16, written after each step
    from fp32 masters (ipex: harness.models.master_weights) or as the high halves of the split
    fp32 weights (fused: harness.kernels.lamb), not cast by autocast every step."""

    # The steps (harness.train.metrics.MetricsProcessor.summary)
    steps_completed: int = 0
    steps_measured: int | None = None
    cold_steps: list[int] = field(default_factory=list)
    """The steps the statistics left out (warm-up, after a resume, the census step)."""
    throughput_seq_per_s: float | None = None
    """Median over the timed steps."""
    throughput_p10: float | None = None
    throughput_p90: float | None = None
    step_time_median_s: float | None = None
    step_time_cv: float | None = None
    data_wait_fraction: float | None = None
    harness_time_fraction: float | None = None
    cpu_share_median: float | None = None
    model_tflops_per_s: float | None = None
    batch_size: int | None = None
    final_loss: float | None = None
    """The mean of the last final_loss_steps steps' losses."""
    final_loss_steps: int | None = None
    roofline_gflops: float | None = None
    mfu: float | None = None
    optimizer_bytes: int | None = None
    """What the optimizer's step must stream at the least (harness.models.lamb.Lamb.streamed_bytes)."""
    stream_gbytes_per_s: float | None = None
    """The memory bandwidth `harness roofline` measured beside the peak."""
    speed_of_light_s: float | None = None
    """The census step's GEMM FLOPs at the peak plus the optimizer's bytes at the bandwidth."""
    speed_of_light_share: float | None = None
    """speed_of_light_s over the timed steps' median: how near the machine's limits the run came."""

    # The last evaluation
    eval_mlm_accuracy: float | None = None
    eval_loss: float | None = None
    eval_nsp_accuracy: float | None = None
    eval_examples: int | None = None

    # The run's cores (harness.machine.contention.judge)
    cpu_available: float | None = None
    cpu_others_share: float | None = None
    cpu_steal_share: float | None = None
    contention_threshold: float | None = None
    contended: bool | None = None

    # An aggregate of instances (harness.results.instances)
    instances: int | None = None
    instance_results: list[dict[str, Any]] = field(default_factory=list)
    throughput_note: str | None = None

    def __post_init__(self) -> None:
        self.status = Status(self.status)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    @classmethod
    def required(cls) -> list[str]:
        """The fields every result.json holds."""
        return [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status.value}
