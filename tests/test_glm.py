"""recsysllm_nb.glm: prefix-LM property, padding, KV cache and generate, loss, gradients, rotary2d, save / load,
Auto classes, and loading a GLM-named checkpoint (HF `glm.` prefix, Megatron `module` layout). Tiny configs only."""
import json

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache

from recsysllm_nb.glm import (GLMConfig, GLMForCausalLM, GLMModel, glm_10b_config, glm_large_config, glm_loss, tiny_glm_config)
from recsysllm_nb.glm_checkpoint import glm_key, load_glm_checkpoint, read_state_dict

SOP = 2


def make_batch(seed=0, vocab=128):
    """Two blank-infilling samples laid out as the collator does: Part A (with one mask at `mpos`) + Part B
    ([sop] + span), right-padded. Sample 0: Part A 10, Part B 6 (16 real). Sample 1: Part A 7, Part B 4, padded to 16."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (2, 16), generator=g)
    pos = torch.zeros(2, 2, 16, dtype=torch.long)
    am = torch.zeros(2, 16, dtype=torch.long)
    labels = torch.full((2, 16), -100)
    for i, (la, lb, mpos) in enumerate([(10, 6, 3), (7, 4, 5)]):
        ids[i, la] = SOP
        pos[i, 0, :la] = torch.arange(la)
        pos[i, 0, la:la + lb] = mpos
        pos[i, 1, la:la + lb] = torch.arange(1, lb + 1)
        am[i, :la + lb] = 1
        labels[i, la:la + lb - 1] = ids[i, la + 1:la + lb]
        labels[i, la + lb - 1] = 3
        ids[i, la + lb:] = 0
    return dict(input_ids=ids, position_ids=pos, attention_mask=am, prefix_len=torch.tensor([10, 7]), labels=labels)


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return GLMForCausalLM(tiny_glm_config()).eval()


def run(m, batch, **over):
    b = {k: v for k, v in {**batch, **over}.items() if k != 'labels'}
    with torch.no_grad(): return m(**b).logits


def replaced(batch, col, row=0):
    b = {k: v.clone() for k, v in batch.items()}
    b['input_ids'][row, col] = (int(b['input_ids'][row, col]) + 1) % 128
    return b


@pytest.mark.parametrize('enc', ['learned', 'rotary2d'])
def test_prefix_lm_property(enc):
    torch.manual_seed(0)
    m = GLMForCausalLM(tiny_glm_config(position_encoding=enc)).eval()
    batch = make_batch()
    ref = run(m, batch)
    moved = (run(m, replaced(batch, 12)) - ref)[0].abs().amax(-1) > 1e-6   # a Part B token (Part A is 0..9)
    assert not moved[:12].any()                 # Part A and earlier Part B outputs are identical
    assert moved[12:].all()                     # the token's own and later outputs change
    moved = (run(m, replaced(batch, 4)) - ref)[0].abs().amax(-1) > 1e-6    # a Part A token
    assert moved.all()                          # everything changes (Part A is bidirectional, seen by Part B)
    assert torch.equal(run(m, replaced(batch, 4))[1], ref[1])              # the other sample is untouched


def test_padding_changes_nothing(model):
    batch = make_batch()
    ref = run(model, batch)
    alone = {k: v[1:2, ..., :11] if k != 'prefix_len' else v[1:2] for k, v in batch.items()}   # sample 1, no padding
    torch.testing.assert_close(run(model, alone)[0], ref[1, :11], atol=1e-5, rtol=1e-5)
    more = {k: (torch.cat([v, torch.zeros_like(v[..., :8])], -1) if k != 'prefix_len' else v) for k, v in batch.items()}
    torch.testing.assert_close(run(model, more)[:, :16][batch['attention_mask'].bool()],
                               ref[batch['attention_mask'].bool()], atol=1e-5, rtol=1e-5)
    b2 = {k: v.clone() for k, v in batch.items()}
    b2['input_ids'][1, 11:] = 77                                            # change what sits in the padding
    torch.testing.assert_close(run(model, b2)[1, :11], ref[1, :11], atol=0, rtol=0)
    assert torch.isfinite(ref).all()


@pytest.mark.parametrize('enc', ['learned', 'rotary2d'])
def test_kv_cache_incremental_equals_full(enc):
    torch.manual_seed(1)
    m = GLMForCausalLM(tiny_glm_config(position_encoding=enc)).eval()
    b = {k: v[:1] for k, v in make_batch().items()}
    full = run(m, b)[0]
    cut = 11                                                               # Part A + [sop]
    with torch.no_grad():
        out = m(input_ids=b['input_ids'][:, :cut], position_ids=b['position_ids'][:, :, :cut], prefix_len=b['prefix_len'],
                cache=DynamicCache(config=m.config), use_cache=True)
        steps = [out.logits]
        for t in range(cut, 16):
            out = m(input_ids=b['input_ids'][:, t:t + 1], position_ids=b['position_ids'][:, :, t:t + 1],
                    attention_mask=torch.ones(1, t + 1, dtype=torch.long), prefix_len=b['prefix_len'], cache=out.cache)
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, 1)[0], full, atol=1e-5, rtol=1e-5)


def test_generate_follows_glm_position_rule(model):
    b = make_batch()
    prompt = dict(input_ids=b['input_ids'][:, :8], position_ids=b['position_ids'][:, :, :8].clone(),
                  attention_mask=torch.ones(2, 8, dtype=torch.long), prefix_len=torch.tensor([7, 7]))
    prompt['position_ids'][:, 1, 7] = 1                                     # column 7 is the [sop]
    prompt['position_ids'][:, 0, 7] = 2
    gen = model.generate(**prompt, max_new_tokens=4, do_sample=False, pad_token_id=0)
    ids, pos = prompt['input_ids'], prompt['position_ids']
    with torch.no_grad():
        for _ in range(4):                                                 # no cache, positions by hand
            nxt = model(input_ids=ids, position_ids=pos, prefix_len=prompt['prefix_len'], use_cache=False).logits[:, -1].argmax(-1)
            ids = torch.cat([ids, nxt[:, None]], 1)
            pos = torch.cat([pos, torch.stack([pos[:, 0, -1:], pos[:, 1, -1:] + 1], 1)], -1)
    assert torch.equal(gen, ids)
    beams = model.generate(**prompt, max_new_tokens=3, num_beams=3, num_return_sequences=2, do_sample=False, pad_token_id=0)
    assert beams.shape == (4, 11)


def test_loss_ignores_unlabelled_and_is_finite(model):
    batch = make_batch()
    out = model(**batch)
    lab = batch['labels']
    expect = F.cross_entropy(out.logits[lab != -100], lab[lab != -100])   # no shift: logits[t] vs labels[t]
    torch.testing.assert_close(out.loss, expect)
    none = model(**{**batch, 'labels': torch.full_like(lab, -100)}).loss
    assert torch.isfinite(none) and none.item() == 0.0
    assert glm_loss(out.logits, lab, num_items_in_batch=2 * int((lab != -100).sum())).item() == pytest.approx(expect.item() / 2,
                                                                                                             rel=1e-5)
    shifted = F.cross_entropy(out.logits[:, :-1][lab[:, 1:] != -100], lab[:, 1:][lab[:, 1:] != -100])
    assert abs(shifted.item() - out.loss.item()) > 1e-4                    # it is not the usual shifted causal loss


def test_gradients_reach_block_position_embeddings():
    torch.manual_seed(0)
    m = GLMForCausalLM(tiny_glm_config()).train()
    batch = make_batch()
    m(**batch).loss.backward()
    g = m.glm.transformer.block_position_embeddings.weight.grad
    used = set(batch['position_ids'][:, 1][batch['attention_mask'].bool()].tolist())
    rows = set(g.abs().sum(-1).nonzero().flatten().tolist())
    assert rows == used and rows >= {0, 1, 2, 3, 4, 5, 6}
    assert m.glm.transformer.position_embeddings.weight.grad.abs().sum() > 0


def test_rotary2d_runs_and_differs_from_learned(model):
    torch.manual_seed(0)
    rot = GLMForCausalLM(tiny_glm_config(position_encoding='rotary2d')).eval()
    missing, unexpected = rot.load_state_dict(model.state_dict(), strict=False)
    assert missing == [] and sorted(unexpected) == ['glm.transformer.block_position_embeddings.weight',
                                                    'glm.transformer.position_embeddings.weight']
    assert not any('position_embeddings' in k for k in rot.state_dict())
    batch = make_batch()
    a, b = run(model, batch), run(rot, batch)
    assert torch.isfinite(b).all() and (a - b).abs().max() > 1e-3
    shift = {**batch, 'position_ids': batch['position_ids'] + torch.tensor([5, 2]).view(1, 2, 1)}
    torch.testing.assert_close(run(rot, shift), b, atol=1e-4, rtol=1e-4)   # relative: a common shift changes nothing
    with pytest.raises(ValueError, match='divide by 4'):
        GLMConfig(hidden_size=24, num_attention_heads=4, position_encoding='rotary2d')


def test_save_pretrained_round_trip_and_auto_classes(model, tmp_path):
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / 'config.json').read_text())['model_type'] == 'recsysllm_glm'
    assert isinstance(AutoConfig.from_pretrained(tmp_path), GLMConfig)
    back = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(back) is GLMForCausalLM
    assert back.lm_head.weight is back.glm.word_embeddings.weight
    batch = make_batch()
    assert torch.equal(run(back, batch), run(model, batch))
    body = GLMModel.from_pretrained(tmp_path)
    assert torch.equal(body.word_embeddings.weight, model.glm.word_embeddings.weight)


def glm_large_named_state_dict(model):
    "A tiny checkpoint as the HF GLM files store it: glm-large's key names with the `glm.` prefix, no lm_head (tied)."
    sd = {k: v.clone() for k, v in model.state_dict().items() if k != 'lm_head.weight'}
    L = model.config.num_layers
    expected = {'glm.word_embeddings.weight', 'glm.transformer.position_embeddings.weight',
                'glm.transformer.block_position_embeddings.weight', 'glm.transformer.final_layernorm.weight',
                'glm.transformer.final_layernorm.bias'}
    for i in range(L):
        for n in ('input_layernorm', 'attention.query_key_value', 'attention.dense', 'post_attention_layernorm',
                  'mlp.dense_h_to_4h', 'mlp.dense_4h_to_h'):
            expected |= {f'glm.transformer.layers.{i}.{n}.weight', f'glm.transformer.layers.{i}.{n}.bias'}
    assert set(sd) == expected
    h, c = model.config.hidden_size, model.config
    assert sd['glm.transformer.layers.0.attention.query_key_value.weight'].shape == (3 * h, h)
    assert sd['glm.transformer.layers.0.mlp.dense_h_to_4h.weight'].shape == (4 * h, h)
    assert sd['glm.transformer.position_embeddings.weight'].shape == (c.max_sequence_length + 1, h)
    return sd


def test_tiny_checkpoint_loads(model, tmp_path):
    sd = glm_large_named_state_dict(model)
    batch = make_batch()
    loaded = load_glm_checkpoint(sd, model.config)
    assert loaded.load_report.ok and loaded.load_report.loaded == len(sd)
    assert torch.equal(run(loaded, batch), run(model, batch))
    assert loaded.lm_head.weight is loaded.glm.word_embeddings.weight
    megatron = {'iteration': 3, 'module': {'module.' + k.removeprefix('glm.'): v for k, v in sd.items()}}
    assert torch.equal(run(load_glm_checkpoint(megatron, model.config), batch), run(model, batch))
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / 'model.safetensors'))
    (tmp_path / 'config.json').write_text(json.dumps(dict(model_type='glm', num_layers=2, hidden_size=64, num_attention_heads=4,
                                                          max_sequence_length=128, vocab_size=128)))
    folder = load_glm_checkpoint(tmp_path)                                 # config from GLM's own config.json
    assert (folder.load_report.origin, folder.config.hidden_act) == ('hf', 'gelu')   # HF GLM code: erf GELU
    erf = GLMForCausalLM(GLMConfig.from_dict({**model.config.to_dict(), 'hidden_act': 'gelu'})).eval()
    erf.load_state_dict(model.state_dict())
    assert torch.equal(run(folder, batch), run(erf, batch))
    assert not torch.equal(run(folder, batch), run(model, batch))          # the tanh model differs
    forced = load_glm_checkpoint(tmp_path, hidden_act='gelu_tanh')
    assert torch.equal(run(forced, batch), run(model, batch))
    assert set(read_state_dict(tmp_path)) == set(sd)


def test_checkpoint_problems_are_named(model):
    sd = glm_large_named_state_dict(model)
    bad = {k: v for k, v in sd.items() if k != 'glm.transformer.layers.1.mlp.dense_4h_to_h.bias'}
    bad['glm.transformer.layers.0.attention.rotary_emb.inv_freq'] = torch.ones(4)     # ignored buffer
    bad['glm.transformer.spare.weight'] = torch.ones(2)
    with pytest.raises(ValueError, match=r'missing from the checkpoint \(1\): glm.transformer.layers.1.mlp.dense_4h_to_h.bias'):
        load_glm_checkpoint(bad, model.config)
    with pytest.warns(UserWarning, match='unexpected in the checkpoint'):
        m = load_glm_checkpoint(bad, model.config, strict=False)
    r = m.load_report
    assert r.missing == ['glm.transformer.layers.1.mlp.dense_4h_to_h.bias']
    assert r.unexpected == ['glm.transformer.spare.weight'] and len(r.ignored) == 1
    with pytest.raises(ValueError, match=r'glm.word_embeddings.weight checkpoint \(128, 64\) vs model \(100, 64\)'):
        load_glm_checkpoint(sd, tiny_glm_config(vocab_size=100))
    with pytest.raises(ValueError, match='pass config='):
        load_glm_checkpoint(sd)
    assert glm_key('module.module.transformer.layers.0.attention.dense.weight') == 'glm.transformer.layers.0.attention.dense.weight'
    assert glm_key('glm.word_embeddings.weight') == 'glm.word_embeddings.weight'


def test_position_out_of_range_is_a_clear_error(model):
    batch = make_batch()
    batch['position_ids'][0, 1, 12] = 129
    with pytest.raises(ValueError, match=r'position ids must lie in \[0, 128\]'):
        run(model, batch)


def test_presets_document_public_sizes():
    large, big = glm_large_config(), glm_10b_config()
    assert (large.num_layers, large.hidden_size, large.num_attention_heads, large.max_sequence_length, large.vocab_size) == \
        (24, 1024, 16, 512, 30592)
    assert (big.num_layers, big.hidden_size, big.num_attention_heads, big.max_sequence_length, big.vocab_size) == \
        (48, 4096, 64, 1024, 50304)
    assert large.num_hidden_layers == 24 and big.max_position_embeddings == 1024 and large.intermediate_size == 4096
    assert glm_large_config(position_encoding='rotary2d').position_encoding == 'rotary2d'
    assert large.hidden_act == 'gelu_tanh' and glm_large_config(hidden_act='gelu').hidden_act == 'gelu'
    with pytest.raises(ValueError, match=r"hidden_act must be one of \('gelu_tanh', 'gelu'\), got 'relu'"):
        GLMConfig(hidden_act='relu')
