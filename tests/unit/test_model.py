"""The BERT model: loss definition, padding, the masked-only MLM head, FLOPs, configs, HF format."""

import json

import pytest
import torch
import torch.nn.functional as F
from batches import random_batch

from harness.errors import HarnessError
from harness.models import NAMED_CONFIGS, BertConfig, BertForPreTraining, load_config
from harness.models.bert import masked_rows, rows_at
from harness.models.flops import training_step_flops
from harness.models.hf_format import from_hf_state_dict, to_hf_state_dict

TINY = NAMED_CONFIGS["bert-tiny"]


@pytest.mark.parametrize("unused_tail", [False, True])
def test_loss_is_weighted_mlm_plus_nsp_computed_on_masked_positions_only(unused_tail):
    torch.manual_seed(0)
    model = BertForPreTraining(TINY).eval()
    batch = random_batch()
    if unused_tail:  # no sequence uses the last two slots: the last layer leaves them out
        batch.masked_lm_weights[:, -2:] = 0
    out = model(batch)
    assert out.masked_tokens == int((batch.masked_lm_weights > 0).sum()) == (12 if unused_tail else 16)
    # [CLS] and the slots up to the last one used, per sequence
    assert out.head_rows == 3 * (1 + (4 if unused_tail else 6))

    # Recompute from the encoder output over all tokens, the way a plain implementation would.
    with torch.no_grad():
        mask = batch.input_mask.bool()[:, None, None, :]
        x = model.bert.encoder(model.bert.embeddings(batch.input_ids, batch.segment_ids), mask)
        h = model.cls.predictions.transform(x)
        logits = h @ model.bert.embeddings.word_embeddings.weight.T + model.cls.predictions.bias
        picked = logits[torch.arange(3)[:, None], batch.masked_lm_positions]  # [B, P, V]
        ce = F.cross_entropy(
            picked.reshape(-1, TINY.vocab_size), batch.masked_lm_ids.reshape(-1), reduction="none"
        )
        w = batch.masked_lm_weights.reshape(-1)
        mlm = (ce * w).sum() / (w.sum() + 1e-5)
        nsp = F.cross_entropy(model.cls.seq_relationship(model.bert.pooler(x)), batch.next_sentence_labels)
    torch.testing.assert_close(out.mlm_loss, mlm, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.nsp_loss, nsp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.loss, mlm + nsp, rtol=1e-5, atol=1e-5)


def test_masked_rows_are_the_masked_tokens_in_order_then_unused_slots_up_to_the_multiple():
    selected = torch.tensor([[True, False, True], [False, True, False]])
    assert masked_rows(selected, 1).tolist() == [0, 2, 4]
    assert masked_rows(selected, 3).tolist() == [0, 2, 4]
    assert masked_rows(selected, 4).tolist() == [0, 2, 4, 1]
    assert masked_rows(selected, 8).tolist() == [0, 2, 4, 1, 3, 5]  # fewer slots than the multiple


def test_the_mlm_heads_padded_rows_change_neither_the_loss_nor_the_gradients():
    """In training, masked_row_multiple pads the MLM head's rows with unused slots at weight 0:
    the loss and every gradient stay those of the masked tokens alone; evaluation never pads."""
    torch.manual_seed(0)
    model = BertForPreTraining(TINY).train()
    batch = random_batch()  # 16 masked tokens in 18 slots

    def run(multiple: int):
        model.masked_row_multiple = multiple
        model.zero_grad()
        torch.manual_seed(1)  # the same dropout masks
        out = model(batch)
        out.loss.backward()
        return out, [p.grad.clone() for p in model.parameters()]

    (plain, plain_grads), (padded, padded_grads) = run(1), run(6)
    assert plain.mlm_logits.shape[0] == 16 and padded.mlm_logits.shape[0] == 18
    assert padded.mlm_weights[16:].eq(0).all() and padded.masked_tokens == plain.masked_tokens == 16
    torch.testing.assert_close(padded.loss, plain.loss)
    for ours, reference in zip(padded_grads, plain_grads, strict=True):
        torch.testing.assert_close(ours, reference)
    right, weight, _ = padded.accuracy_counts(batch.next_sentence_labels)
    assert (right, weight) == plain.accuracy_counts(batch.next_sentence_labels)[:2]
    with torch.no_grad():
        assert model.eval()(batch).mlm_logits.shape[0] == 16


def test_the_last_layer_on_the_heads_rows_is_the_full_layer_at_those_rows():
    """The encoder given query positions runs its last layer on those rows alone: its output and
    the input's gradient are the full encoder's at those rows, repeated rows included (the
    padding slots and [CLS] at position 0)."""
    torch.manual_seed(0)
    model = BertForPreTraining(TINY).eval()
    batch = random_batch()
    mask = batch.input_mask.bool()[:, None, None, :]
    positions = torch.cat([torch.zeros_like(batch.masked_lm_positions[:, :1]), batch.masked_lm_positions], 1)
    positions[0, -2:] = 0  # the padding slots, at position 0 as in MLCommons' data: [CLS] thrice
    x = model.bert.embeddings(batch.input_ids, batch.segment_ids).detach().requires_grad_()
    full = rows_at(model.bert.encoder(x, mask), positions)
    part = model.bert.encoder(x, mask, positions)
    assert part.shape == (*positions.shape, TINY.hidden_size)
    torch.testing.assert_close(part, full, rtol=1e-5, atol=1e-6)
    grad = torch.randn_like(full)
    (ours,), (reference,) = (torch.autograd.grad(y, x, grad) for y in (part, full))
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


def test_padding_does_not_change_the_result():
    torch.manual_seed(0)
    model = BertForPreTraining(TINY).eval()
    short = random_batch(S=24, real=24)
    padded = random_batch(S=24, real=24)
    padded.input_ids = F.pad(short.input_ids, (0, 8))
    padded.input_mask = F.pad(short.input_mask, (0, 8))
    padded.segment_ids = F.pad(short.segment_ids, (0, 8))
    with torch.no_grad():
        a, b = model(short), model(padded)
    torch.testing.assert_close(a.loss, b.loss, rtol=1e-5, atol=1e-5)
    # ... while garbage in the padded positions would change it if the mask were ignored
    padded.input_mask[:, 24:] = 1
    padded.input_ids[:, 24:] = 5000
    with torch.no_grad():
        assert not torch.allclose(model(padded).loss, a.loss)


def test_flops_formula_for_bert_large():
    cfg = NAMED_CONFIGS["bert-large"]
    S, B, slots, P = 128, 8, 20, 20 * 8
    H, L, I, V = 1024, 24, 4096, 30522
    R = 1 + slots  # the last layer's rows per sequence: [CLS] and the masked-position slots
    layer = 2 * S * H * 3 * H + 4 * S * S * H + 2 * S * H * H + 4 * S * H * I
    last = 2 * S * H * 3 * H + 4 * R * S * H + 2 * R * H * H + 4 * R * H * I
    per_seq = (L - 1) * layer + last + 2 * H * H + 4 * H
    expected = 3 * (B * per_seq + P * (2 * H * H + 2 * H * V))
    assert training_step_flops(cfg, B, S, B * R, P) == expected
    # ~ 6 x parameters x tokens for the encoder, the usual rule of thumb (within 15%)
    encoder_params = L * (4 * H * H + 2 * H * I)
    assert expected == pytest.approx(6 * encoder_params * B * S, rel=0.15)


def test_named_configs_and_json_configs(tmp_path):
    large = load_config("bert-large")
    assert (
        large.hidden_size,
        large.num_hidden_layers,
        large.num_attention_heads,
        large.intermediate_size,
        large.vocab_size,
        large.max_position_embeddings,
    ) == (1024, 24, 16, 4096, 30522, 512)
    mlcommons = {  # the MLCommons bert_config.json, key for key
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": 1024,
        "initializer_range": 0.02,
        "intermediate_size": 4096,
        "max_position_embeddings": 512,
        "num_attention_heads": 16,
        "num_hidden_layers": 24,
        "type_vocab_size": 2,
        "vocab_size": 30522,
    }
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps(mlcommons))
    assert load_config(str(path)) == large
    path.write_text(json.dumps({**mlcommons, "num_attention_heads": 5}))
    with pytest.raises(HarnessError, match="not divisible"):
        load_config(str(path))
    path.write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(HarnessError, match=r"bert_config.json: missing keys"):
        load_config(str(path))
    with pytest.raises(HarnessError, match=r"--model nope: not a named config"):
        load_config("nope")


def test_hf_state_dict_round_trip():
    model = BertForPreTraining(TINY)
    state = model.state_dict()
    hf = to_hf_state_dict(state)
    assert "bert.encoder.layer.1.attention.self.query.weight" in hf
    assert not any(".qkv." in k for k in hf)
    back = from_hf_state_dict(hf)
    assert back.keys() == state.keys()
    for k in state:
        torch.testing.assert_close(back[k], state[k])


def test_config_round_trips_through_hf_dict():
    cfg = BertConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=4, intermediate_size=96)
    assert BertConfig.from_dict(cfg.to_hf_dict(), "x") == cfg


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_the_tied_word_embeddings_get_the_gradient_of_both_uses(dtype):
    torch.manual_seed(0)
    model = BertForPreTraining(TINY).eval()  # eval: no dropout, the same math on both sides
    batch = random_batch()
    # the tokens include the padding id 0, whose row the lookup must leave alone (the decoder not)
    assert bool((batch.input_ids == 0).any())

    def reference_loss():
        # what autograd computes with the plain modules: nn.Embedding, then F.linear
        emb = model.bert.embeddings
        x = emb.dropout(
            emb.LayerNorm(
                emb.word_embeddings(batch.input_ids)
                + emb.position_embeddings.weight[: batch.input_ids.shape[1]]
                + emb.token_type_embeddings(batch.segment_ids)
            )
        )
        x = model.bert.encoder(x, batch.input_mask.bool()[:, None, None, :])
        picked = x[torch.arange(3)[:, None], batch.masked_lm_positions][batch.masked_lm_weights > 0]
        logits = F.linear(
            model.cls.predictions.transform(picked), emb.word_embeddings.weight, model.cls.predictions.bias
        )
        selected = batch.masked_lm_weights > 0
        w = batch.masked_lm_weights[selected]
        ce = F.cross_entropy(logits.float(), batch.masked_lm_ids[selected], reduction="none")
        nsp = F.cross_entropy(
            model.cls.seq_relationship(model.bert.pooler(x)).float(), batch.next_sentence_labels
        )
        return (ce * w).sum() / (w.sum() + 1e-5) + nsp

    grads = []
    for loss_fn in (lambda: model(batch).loss, reference_loss):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = loss_fn()
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    ours, reference = grads
    word = "bert.embeddings.word_embeddings.weight"
    assert ours[word].dtype == torch.float32 and ours[word].is_contiguous()
    tolerance = {} if dtype is None else {"rtol": 2e-2, "atol": 2e-3}
    for name in reference:
        torch.testing.assert_close(ours[name], reference[name], **tolerance, msg=name)


@pytest.mark.parametrize("autocast", [False, True])
def test_the_decoder_weight_gradient_reads_the_logits_gradient_through_a_given_transpose(autocast):
    """decoder_transpose: called once a backward pass, with the logits' gradient, and the loss and
    gradients as with the transposed view (the GEMM reads the same numbers laid out otherwise)."""
    torch.manual_seed(0)
    model = BertForPreTraining(TINY).eval()
    batch = random_batch()
    seen = []

    def transpose(g: torch.Tensor) -> torch.Tensor:
        seen.append(g.shape)
        return g.t().contiguous()

    results = []
    for given in (None, transpose):
        model.decoder_transpose = given
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model(batch)
        out.loss.backward()
        results.append((out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    assert seen == [out.mlm_logits.shape]
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert torch.equal(loss_a, loss_b)
    for name, g in grads_a.items():
        torch.testing.assert_close(grads_b[name], g, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("autocast", [False, True])
def test_the_decoder_reads_a_bf16_copy_of_the_word_embeddings_only_under_bf16_autocast(autocast):
    """decoder_weight16, the copy an optimizer keeps current: under bf16 autocast the same loss and
    gradients, bit for bit, as autocast's own cast of the fp32 matrix (the same rounding), and a
    copy that differs changes the loss; without autocast it is not read (a stale copy changes
    nothing)."""
    torch.manual_seed(0)
    model = BertForPreTraining(TINY).eval()
    batch = random_batch()
    word = model.bert.embeddings.word_embeddings.weight
    current = word.detach().to(torch.bfloat16)
    stale = torch.zeros_like(current)
    results = []
    for copy in (None, current if autocast else stale, stale):
        model.decoder_weight16 = copy
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(batch).loss
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (loss_a, grads_a), (loss_b, grads_b), (loss_stale, _) = results
    assert torch.equal(loss_a, loss_b)
    assert grads_b["bert.embeddings.word_embeddings.weight"].dtype == torch.float32
    for name, g in grads_a.items():
        assert torch.equal(grads_b[name], g), name
    # under autocast the decoder computes with the copy it is given: zeros change the loss
    assert torch.equal(loss_stale, loss_a) != autocast
