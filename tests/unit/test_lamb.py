"""LAMB against a straightforward per-tensor reference, and the learning-rate schedule."""

import copy
import math

import pytest
import torch

from harness.models import NAMED_CONFIGS, BertForPreTraining, Lamb, poly_warmup_lr
from harness.models.lamb import parameter_groups
from harness.precision import onednn_verbose


def reference_lamb(params, grads_per_step, lr, wd_mask, betas=(0.9, 0.999), eps=1e-6, wd=0.01, max_norm=1.0):
    """Per tensor, in plain arithmetic: what the MLPerf reference's LAMB does. Parameter 0 stands
    for a fused Q/K/V weight: the reference holds it as three tensors, so three trust ratios."""
    params = [p.clone() for p in params]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for t, grads in enumerate(grads_per_step, start=1):
        norm = math.sqrt(sum(float((g * g).sum()) for g in grads))
        scale = 1.0 / max(norm / max_norm, 1.0)
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            g = g * scale
            m[i] = betas[0] * m[i] + (1 - betas[0]) * g
            v[i] = betas[1] * v[i] + (1 - betas[1]) * g * g
            m_hat = m[i] / (1 - betas[0] ** t)
            v_hat = v[i] / (1 - betas[1] ** t)
            update = m_hat / (v_hat.sqrt() + eps)
            if wd_mask[i]:
                update = update + wd * p
                parts = []
                for pc, uc in zip(p.chunk(3 if i == 0 else 1), update.chunk(3 if i == 0 else 1), strict=True):
                    w_norm, u_norm = float(pc.norm()), float(uc.norm())
                    parts.append(uc * (w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0))
                update = torch.cat(parts)
            params[i] = p - lr * update
    return params


@pytest.mark.parametrize("grad_scale", [0.01, 10.0])  # below and above the clipping norm
def test_lamb_matches_per_tensor_reference(grad_scale):
    torch.manual_seed(0)
    shapes = [(18, 8), (8,), (4, 4, 3), (5,)]
    params = [torch.randn(s, dtype=torch.float64) for s in shapes]
    params.append(torch.zeros(7, dtype=torch.float64))  # zero weights: trust ratio falls back to 1
    wd_mask = [True, False, True, False, True]
    grads_per_step = [[torch.randn_like(p) * grad_scale for p in params] for _ in range(4)]

    live = [torch.nn.Parameter(p.clone()) for p in params]
    live[0].lamb_chunks = 3
    groups = [
        {
            "params": [p for p, d in zip(live, wd_mask, strict=True) if d],
            "weight_decay": 0.01,
            "adaptive": True,
        },
        {
            "params": [p for p, d in zip(live, wd_mask, strict=True) if not d],
            "weight_decay": 0.0,
            "adaptive": False,
        },
    ]
    opt = Lamb(groups, lr=0.05)
    for grads in grads_per_step:
        for p, g in zip(live, grads, strict=True):
            p.grad = g.clone()
        opt.step()
    expected = reference_lamb(params, grads_per_step, 0.05, wd_mask)
    for got, want in zip(live, expected, strict=True):
        # float64 parameters, but the fused kernel takes the clipping factor as a float32 scalar
        torch.testing.assert_close(got.detach(), want, rtol=1e-6, atol=1e-9)


def test_step_returns_the_unclipped_global_norm():
    p = torch.nn.Parameter(torch.ones(4))
    p.grad = torch.full((4,), 3.0)
    assert Lamb([p]).step().item() == pytest.approx(6.0)


def test_bias_and_layernorm_get_no_weight_decay():
    model = BertForPreTraining(NAMED_CONFIGS["bert-tiny"])
    names = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = parameter_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    decayed = {names[id(p)] for p in decay["params"]}
    exempt = {names[id(p)] for p in no_decay["params"]}
    assert "bert.encoder.layer.0.attention.self.qkv.weight" in decayed
    assert "bert.embeddings.word_embeddings.weight" in decayed
    assert "bert.encoder.layer.1.output.LayerNorm.weight" in exempt
    assert "cls.predictions.bias" in exempt
    assert all(n.endswith("bias") or "LayerNorm" in n for n in exempt)
    assert not any(n.endswith("bias") or "LayerNorm" in n for n in decayed)
    assert len(decayed) + len(exempt) == len(names)


def test_poly_warmup_schedule_as_the_mlperf_reference():
    # polynomial (power 1) decay over all 12 steps; the first 4 replaced by the linear warm-up
    lrs = [poly_warmup_lr(s, 1.0, warmup_steps=4, total_steps=12) for s in range(1, 13)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert lrs[4:] == pytest.approx([7 / 12, 6 / 12, 5 / 12, 4 / 12, 3 / 12, 2 / 12, 1 / 12, 0.0])


def test_trust_ratio_is_decided_by_the_group_not_by_the_decay_rate():
    torch.manual_seed(1)
    p = torch.nn.Parameter(torch.randn(6, 4))
    p.grad = torch.randn(6, 4)
    before = p.detach().clone()
    Lamb([{"params": [p], "weight_decay": 0.0, "adaptive": True}], lr=0.1).step()
    # with the trust ratio, the step's size is lr * ||p|| whatever the gradient's scale
    assert float((p.detach() - before).norm()) == pytest.approx(0.1 * float(before.norm()), rel=1e-5)


def test_a_non_finite_gradient_is_not_applied():
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.tensor([1.0, float("nan"), 0.0])
    opt = Lamb([p])
    assert opt.step_if_finite() is None
    assert torch.equal(p.detach(), torch.ones(3)) and not opt.state
    p.grad = torch.tensor([1.0, 2.0, 2.0])
    assert opt.step_if_finite() == pytest.approx(3.0)


def test_a_deep_copy_steps_like_the_original():
    """ipex.optimize deep-copies the optimizer, and torch's Optimizer pickles only its defaults,
    state and groups: the clipping norm must be among them (it was an attribute once, and IPEX
    runs failed on its absence)."""
    torch.manual_seed(0)
    weights = [torch.nn.Parameter(torch.randn(8, 8)) for _ in range(2)]
    original = Lamb([{"params": weights, "adaptive": True}], lr=0.1, max_grad_norm=0.5)
    for w in weights:
        w.grad = torch.randn(8, 8) * 3  # norm above 0.5: the clip matters
    copy_weights = [torch.nn.Parameter(w.detach().clone()) for w in weights]
    for w, c in zip(weights, copy_weights, strict=True):
        c.grad = w.grad.clone()
    copied = copy.deepcopy(original)
    copied.param_groups[0]["params"] = copy_weights
    original.step()
    copied.step()
    for w, c in zip(weights, copy_weights, strict=True):
        assert torch.equal(w, c)


def _onednn_matmuls(capfd, run) -> int:
    """oneDNN matmuls `run` executed, counted from its verbose lines on stdout."""
    capfd.readouterr()
    with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
        run()
    return sum(e.primitive == "matmul" for e in onednn_verbose.parse(capfd.readouterr().out).executions)


def test_lamb_keeps_its_norms_out_of_onednn_under_the_fp32_route(capfd, monkeypatch):
    """The oneDNN fp32 route (fp32_precision = "bf16") sends torch.dot to oneDNN, five times slower
    than BLAS there and bf16 on AMX: the optimizer's norms run in IEEE fp32, and the route stays."""
    matmul = torch.backends.mkldnn.matmul
    monkeypatch.setattr(matmul, "fp32_precision", "bf16")
    x = torch.randn(1 << 16)
    if not _onednn_matmuls(capfd, lambda: torch.dot(x, x)):
        pytest.skip("this CPU's oneDNN does not take fp32 dot products under the bf16 switch")
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(256, 256)), torch.nn.Parameter(torch.randn(256))]
    optimizer = Lamb([{"params": params, "weight_decay": 0.01, "adaptive": True}], lr=1e-3)
    for p in params:
        p.grad = torch.randn_like(p)
    assert _onednn_matmuls(capfd, optimizer.step_if_finite) == 0
    assert matmul.fp32_precision == "bf16"
