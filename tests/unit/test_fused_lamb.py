"""The fused LAMB kernels (harness/kernels/csrc/lamb.cpp) against Lamb, the eager reference."""

import copy

import pytest
import torch

from harness.kernels.lamb import FusedLamb
from harness.models import NAMED_CONFIGS, BertForPreTraining, Lamb
from harness.models.lamb import parameter_groups


def _problem(seed: int, grad_scale: float):
    """Odd sizes (a tail shorter than a vector, one tensor larger than a kernel block), a fused
    Q/K/V-like weight in three chunks, a zero weight, both groups."""
    torch.manual_seed(seed)
    shapes = [(18, 8), (8,), (4, 4, 3), (5,), (7,), (3, 40000)]
    params = [torch.randn(s) for s in shapes]
    params[4].zero_()  # zero weights: trust ratio falls back to 1
    decays = [True, False, True, False, True, True]
    grads = [[torch.randn(s) * grad_scale for s in shapes] for _ in range(4)]
    return params, decays, grads


def _optimizer(cls, params, decays, **kwargs):
    live = [torch.nn.Parameter(p.clone()) for p in params]
    live[0].lamb_chunks = live[5].lamb_chunks = 3
    groups = [
        {
            "params": [p for p, d in zip(live, decays, strict=True) if d],
            "weight_decay": 0.01,
            "adaptive": True,
        },
        {
            "params": [p for p, d in zip(live, decays, strict=True) if not d],
            "weight_decay": 0.0,
            "adaptive": False,
        },
    ]
    return live, cls(groups, lr=0.05, max_grad_norm=1.0, **kwargs)


@pytest.mark.parametrize("grad_scale", [0.001, 10.0])  # below and above the clipping norm
def test_fused_lamb_steps_like_lamb(fused_ops, grad_scale):
    params, decays, grads = _problem(0, grad_scale)
    eager, reference = _optimizer(Lamb, params, decays)
    fused, optimizer = _optimizer(FusedLamb, params, decays, ops=fused_ops)
    for step_grads in grads:
        for ps in (eager, fused):
            for p, g in zip(ps, step_grads, strict=True):
                p.grad = g.clone()
        want, got = reference.step_if_finite(), optimizer.step_if_finite()
        assert got == pytest.approx(want, rel=1e-6)
        for e, f in zip(eager, fused, strict=True):
            # both in fp32, in another order: a step of lr = 0.05 agrees to a few ulps of 0.05
            torch.testing.assert_close(f.detach(), e.detach(), rtol=1e-5, atol=1e-6)
    for e, f in zip(eager, fused, strict=True):
        for key in ("exp_avg", "exp_avg_sq"):
            want = reference.state[e][key]
            # a moment near zero is a difference of two terms: its error is relative to the others
            torch.testing.assert_close(
                optimizer.state[f][key], want, rtol=1e-5, atol=1e-5 * float(want.abs().max())
            )


def test_tensors_across_several_windows_step_like_lamb(fused_ops):
    """Tensors larger than a window (4 M elements), alone in theirs, and small ones grouped: each
    tensor's trust ratio from its own norms, whichever window it is stepped in."""
    torch.manual_seed(5)
    shapes = [(3, 2**20), (5,), (2**22 + 7,), (2**20,), (1000,), (2**21, 2)]
    params = [torch.randn(s) for s in shapes]
    decays = [True, False, True, True, False, True]
    eager, reference = _optimizer(Lamb, params, decays)
    fused, optimizer = _optimizer(FusedLamb, params, decays, ops=fused_ops)
    scratch = []
    for _ in range(2):
        step_grads = [torch.randn(s) for s in shapes]
        for ps in (eager, fused):
            for p, g in zip(ps, step_grads, strict=True):
                p.grad = g.clone()
        reference.step()
        optimizer.step()
        scratch.append((optimizer.updates.numel(), optimizer.updates.data_ptr()))
    # the updates' scratch: grown to the largest window at the first step, the same memory after
    assert scratch[0] == scratch[1] and scratch[0][0] == 2**22 + 7
    for e, f in zip(eager, fused, strict=True):
        torch.testing.assert_close(f.detach(), e.detach(), rtol=1e-5, atol=1e-6)


def test_a_non_finite_gradient_is_not_applied(fused_ops):
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.tensor([1.0, float("inf"), 0.0])
    optimizer = FusedLamb([p], ops=fused_ops)
    assert optimizer.step_if_finite() is None
    assert torch.equal(p.detach(), torch.ones(3)) and not optimizer.state


def test_state_resumes_across_the_two_implementations(fused_ops):
    """A checkpoint of either optimizer loads into the other: the state has the same keys."""
    params, decays, grads = _problem(1, 1.0)
    eager, reference = _optimizer(Lamb, params, decays)
    for p, g in zip(eager, grads[0], strict=True):
        p.grad = g.clone()
    reference.step()
    fused, optimizer = _optimizer(FusedLamb, [p.detach() for p in eager], decays, ops=fused_ops)
    # a copy: load_state_dict would otherwise share the reference's moment tensors
    optimizer.load_state_dict(copy.deepcopy(reference.state_dict()))
    for ps in (eager, fused):
        for p, g in zip(ps, grads[1], strict=True):
            p.grad = g.clone()
    reference.step()
    optimizer.step()
    for e, f in zip(eager, fused, strict=True):
        torch.testing.assert_close(f.detach(), e.detach(), rtol=1e-5, atol=1e-6)


def _one_pass(ops, grads, threads: int, copies: bool):
    torch.manual_seed(3)
    weights = [torch.randn(g.shape) for g in grads]
    m = [torch.randn(g.shape) * 0.01 for g in grads]
    v = [torch.rand(g.shape) * 0.01 for g in grads]
    out = [torch.empty(g.shape, dtype=torch.bfloat16) for g in grads] if copies else [None] * len(grads)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        n = len(grads)
        # not adaptive: every weight steps by 0.1 * u, whatever the norms
        updates = torch.empty(0)
        norms = ops.lamb_step(
            updates, weights, grads, m, v, out, [None] * n, [0.01] * n, [0.1] * n, [False] * n,
            0.9, 0.999, 1e-6, 3, 0.5,
        )  # fmt: skip
    finally:
        torch.set_num_threads(before)
    return norms, weights, m, v, out


def test_bf16_gradients_are_read_exactly_and_the_bf16_copy_is_rounded_to_nearest_even(fused_ops):
    torch.manual_seed(2)
    grads = [torch.randn(100003).bfloat16(), torch.randn(33).bfloat16()]
    from_bf16 = _one_pass(fused_ops, grads, 2, copies=True)
    from_fp32 = _one_pass(fused_ops, [g.float() for g in grads], 2, copies=True)
    # the moments element by element: the same bits; the norms' sums are vectorised per type, so
    # their order (and last bits) may differ, and the weights with them by the step's last bits
    for moments_bf16, moments_fp32 in zip(from_bf16[2:4], from_fp32[2:4], strict=True):
        assert all(torch.equal(a, b) for a, b in zip(moments_bf16, moments_fp32, strict=True))
    torch.testing.assert_close(from_bf16[0], from_fp32[0], rtol=1e-12, atol=0)
    for a, b in zip(from_bf16[1], from_fp32[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    for weight, rounded in zip(from_bf16[1], from_bf16[4], strict=True):
        assert torch.equal(rounded, weight.to(torch.bfloat16))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_squared_norms_are_sums_in_fp64_of_any_length(fused_ops, dtype):
    """Lengths below a vector, below four (no quarters to read side by side), and across blocks."""
    torch.manual_seed(3)
    xs = [(torch.randn(n) * 10).to(dtype) for n in (1, 2, 3, 4, 9, 1023, 32768, 32769, 100003)]
    expected = torch.stack([x.double().square().sum() for x in xs])
    torch.testing.assert_close(fused_ops.sum_squares(xs), expected, rtol=1e-13, atol=0)


def test_the_same_bits_on_any_thread_count(fused_ops):
    """Fixed blocks, summed in block order: the norms and weights do not depend on the threads."""
    torch.manual_seed(4)
    grads = [torch.randn(300001), torch.randn(5)]
    one, two = _one_pass(fused_ops, grads, 1, False), _one_pass(fused_ops, grads, 2, False)
    assert torch.equal(one[0], two[0])
    assert all(torch.equal(a, b) for a, b in zip(one[1], two[1], strict=True))


def test_bert_tiny_steps_like_lamb(fused_ops):
    """Every parameter of a model, its real gradients: one step each way."""
    cfg = NAMED_CONFIGS["bert-tiny"]
    torch.manual_seed(0)
    eager_model = BertForPreTraining(cfg)
    fused_model = BertForPreTraining(cfg)
    fused_model.load_state_dict(eager_model.state_dict())
    reference = Lamb(parameter_groups(eager_model, 0.01), lr=1e-3)
    optimizer = FusedLamb(parameter_groups(fused_model, 0.01), ops=fused_ops, lr=1e-3)
    for e, f in zip(eager_model.parameters(), fused_model.parameters(), strict=True):
        e.grad = torch.randn_like(e) * 0.1
        f.grad = e.grad.clone()
    exact = sum(float((p.grad.double() ** 2).sum()) for p in eager_model.parameters()) ** 0.5
    # the kernels sum the squares in fp64, the eager norm in fp32 BLAS dots
    assert float(optimizer.step()) == pytest.approx(exact, rel=1e-7)
    assert float(reference.step()) == pytest.approx(exact, rel=1e-4)
    for (name, e), f in zip(eager_model.named_parameters(), fused_model.parameters(), strict=True):
        torch.testing.assert_close(f.detach(), e.detach(), rtol=1e-5, atol=1e-7, msg=name)


def _high_half(x: torch.Tensor) -> torch.Tensor:
    """x rounded to bf16, to nearest with ties away from zero: the fp32 word plus 0x8000, its high
    16 bits (in int64, where nothing overflows)."""
    bits = x.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    return (((bits + 0x8000) >> 16) & 0xFFFF).to(torch.int32).to(torch.int16).view(torch.bfloat16)


def test_a_weight_splits_into_halves_that_join_back_bit_for_bit(fused_ops):
    """Random words of either sign and any exponent (zeros and subnormals among them), and ties."""
    torch.manual_seed(6)
    words = torch.randint(-(2**31), 2**31 - 1, (100003,), dtype=torch.int64).to(torch.int32)
    exponent = (words >> 23) & 0xFF
    words = torch.where(exponent == 0xFF, words & ~(1 << 30), words)  # no NaN or infinity
    x = words.view(torch.float32)
    x[:4] = torch.tensor([0.0, -0.0, 1.0 + 2**-8, -(1.0 + 2**-6 + 2**-8)])  # the last two are ties
    hi, lo = fused_ops.split_weight(x)
    assert hi.dtype == torch.bfloat16 and lo.dtype == torch.int16
    assert torch.equal(fused_ops.join_weight(hi, lo).view(torch.int32), x.view(torch.int32))
    assert torch.equal(hi.view(torch.int16), _high_half(x).view(torch.int16))
    # round to nearest: the same as the nearest-even cast but at the ties, which go away from zero
    assert x[2:4].to(torch.bfloat16).tolist() == [1.0, -(1.0 + 2**-6)]
    assert hi[2:4].tolist() == [1.0 + 2**-7, -(1.0 + 2**-6 + 2**-7)]
    ties = x.view(torch.int32) & 0xFFFF == 0x8000
    assert torch.equal(hi[~ties], x[~ties].to(torch.bfloat16))


def test_split_weights_step_as_fp32_weights_would(fused_ops):
    """hold_in_bf16: the update runs on the fp32 weights the halves make, from the bf16 gradients,
    as on fp32 weights given the same gradients (to the last bits of the norms' sums), and leaves
    the parameter its high half."""
    params, decays, grads = _problem(5, 1.0)
    plain, reference = _optimizer(FusedLamb, params, decays, ops=fused_ops)
    split, optimizer = _optimizer(FusedLamb, params, decays, ops=fused_ops)
    optimizer.hold_in_bf16(split)
    for step_grads in grads:
        for p, s, g in zip(plain, split, step_grads, strict=True):
            s.grad = g.bfloat16()
            p.grad = s.grad.float()
        reference.step()
        optimizer.step()
    for p, s in zip(plain, split, strict=True):
        assert s.dtype == torch.bfloat16 and optimizer.state[s]["exp_avg"].dtype == torch.float32
        joined = fused_ops.join_weight(s.detach(), optimizer.low_halves[s])
        torch.testing.assert_close(joined, p.detach(), rtol=1e-6, atol=1e-7)
        assert torch.equal(s.detach().view(torch.int16), _high_half(joined).view(torch.int16))


def test_a_bf16_weight_without_its_low_half_is_refused(fused_ops):
    weight, grad = torch.zeros(4, dtype=torch.bfloat16), torch.zeros(4)
    with pytest.raises(RuntimeError, match="bfloat16 weight takes its low half"):
        fused_ops.lamb_step(
            torch.empty(0), [weight], [grad], [torch.zeros(4)], [torch.zeros(4)], [None], [None],
            [0.0], [0.1], [True], 0.9, 0.999, 1e-6, 1, 1.0,
        )  # fmt: skip


def test_a_shadow_is_its_fp32_parameter_rounded_after_every_step(fused_ops):
    """shadow_in_bf16: the parameter stays fp32 and steps as without a shadow, bit for bit; the
    shadow is the parameter rounded to nearest even before the first step and after each."""
    params, decays, grads = _problem(5, 1.0)
    plain, reference = _optimizer(FusedLamb, params, decays, ops=fused_ops)
    shadowed, optimizer = _optimizer(FusedLamb, params, decays, ops=fused_ops)
    shadows = [optimizer.shadow_in_bf16(p) for p in shadowed]
    for p, s in zip(shadowed, shadows, strict=True):
        assert torch.equal(s, p.detach().to(torch.bfloat16))
    for step_grads in grads:
        for p, s, g in zip(plain, shadowed, step_grads, strict=True):
            p.grad, s.grad = g.clone(), g.clone()
        reference.step()
        optimizer.step()
        for p, s, shadow in zip(plain, shadowed, shadows, strict=True):
            assert s.dtype == torch.float32 and torch.equal(s.detach(), p.detach())
            assert torch.equal(shadow, s.detach().to(torch.bfloat16))


def test_a_checkpoint_saves_the_masters(fused_ops, tmp_path):
    """The saved model holds the fp32 weights, joined from their halves, not the bf16 high halves,
    which are back after."""
    from harness.train import checkpoint, prepare_backend

    cfg = NAMED_CONFIGS["bert-tiny"]
    model = BertForPreTraining(cfg)
    fp32 = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = FusedLamb(parameter_groups(model, 0.01), ops=fused_ops)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    optimizer.hold_in_bf16(p for m in linears for p in m.parameters())
    state = checkpoint.TrainingState(
        step=0, phase=1, precision="bf16", optimizer={}, rng=torch.get_rng_state(), complete=False, config={}
    )
    with prepare_backend.full_precision(optimizer):
        checkpoint.save(tmp_path / "model_save", model, cfg, state)
    assert linears[0].weight.dtype == torch.bfloat16
    reloaded = BertForPreTraining(cfg)
    checkpoint.load_weights(tmp_path / "model_save", reloaded)
    for name, value in reloaded.state_dict().items():
        assert torch.equal(value, fp32[name]), name


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_fused_backend_gives_the_decoder_its_shadow_under_bf16_only(fused_ops, machine_key, precision):
    """prepare: under bf16 autocast the tied decoder reads the word embeddings' shadow, which the
    optimizer keeps (fp32 has none to read), and, where the weight gradients read their output
    gradients transposed (bf16 on AMX), reads the logits' gradient through transpose_2d; under
    bf16 the MLM head's rows are bucketed."""
    from harness.machine.platform import detect
    from harness.precision.modes import admit, get_precision
    from harness.train import prepare_backend

    mode = get_precision(precision)
    model = BertForPreTraining(NAMED_CONFIGS["bert-tiny"])
    optimizer = Lamb(parameter_groups(model, 0.01), lr=1e-3)
    model, optimizer, _ = prepare_backend.prepare(
        "fused", model, optimizer, mode, machine_key, admit(mode, detect()).gemm_isa
    )
    word = model.bert.embeddings.word_embeddings.weight
    assert word.dtype == torch.float32
    transposed = prepare_backend.transposes_weight_grads(mode, admit(mode, detect()).gemm_isa)
    assert model.decoder_transpose == (fused_ops.transpose_2d if transposed else None)
    # bf16's GEMMs run in oneDNN, which builds kernels per shape: the MLM head's rows are bucketed
    multiple = prepare_backend.MASKED_ROW_MULTIPLE if precision == "bf16" else 1
    assert model.masked_row_multiple == multiple
    if precision == "fp32":
        assert model.decoder_weight16 is None
    else:
        assert model.decoder_weight16 is optimizer.shadows[word]
        assert torch.equal(model.decoder_weight16, word.detach().to(torch.bfloat16))


def test_the_least_bytes_read_the_gradients_twice_and_the_weights_and_moments_once(fused_ops):
    model = torch.nn.Linear(8, 4)
    optimizer = FusedLamb(model.parameters(), ops=fused_ops)
    optimizer.hold_in_bf16([model.weight])
    # the weight's 32: a bf16 gradient read twice (4 B), its two halves and both fp32 moments
    # read and written (8 + 16 B); the fp32 bias's 4: 8 + 8 + 16 B
    assert optimizer.streamed_bytes() == 32 * 28 + 4 * 32
