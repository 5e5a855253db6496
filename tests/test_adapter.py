"""The position adapter on tiny Llama / Qwen2 / GPT-2 models built from configs: zero-init equality, the prefix-LM mask,
peft LoRA, save / load, gradients of the intra table, KV-cache decoding and generate()."""
import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache
from recsysllm_nb.adapter import (RecAdapterConfig, RecAdapterForCausalLM, attention_bias, infilling_loss, lora_targets,
                                  tiny_base_config, LORA_TARGETS)
from recsysllm_nb.positions import prefix_lm_mask

FAMILIES = ['llama', 'qwen2', 'gpt2']
V = 61

def make_batch():
    "Two samples, blank infilling layout, right-padded to 16: (Part A 6, Part B 5) and (Part A 5, Part B 3)."
    g = torch.Generator().manual_seed(0)
    l = 16
    ids = torch.randint(5, V, (2, l), generator=g)
    am = torch.zeros(2, l, dtype=torch.long); am[0, :11] = 1; am[1, :8] = 1
    ids[am == 0] = 0
    inter = torch.zeros(2, l, dtype=torch.long); intra = torch.zeros(2, l, dtype=torch.long)
    inter[0, :6] = torch.arange(6); inter[0, 6:11] = torch.tensor([2, 2, 2, 4, 4]); intra[0, 6:11] = torch.tensor([1, 2, 3, 1, 2])
    intra[0, :6] = torch.tensor([0, 1, 2, 0, 0, 0])
    inter[1, :5] = torch.arange(5); inter[1, 5:8] = 1; intra[1, 5:8] = torch.tensor([1, 2, 3])
    labels = torch.full((2, l), -100)
    labels[0, 6:11] = torch.randint(5, V, (5,), generator=g); labels[1, 5:8] = torch.randint(5, V, (3,), generator=g)
    return dict(input_ids=ids, position_ids=torch.stack([inter, intra], 1), attention_mask=am,
                prefix_len=torch.tensor([6, 5]), labels=labels)

def build(fam, attn='sdpa', **kw):
    torch.manual_seed(0)
    cfg = RecAdapterConfig(base_config=tiny_base_config(fam, vocab_size=V, hidden_size=32), max_intra=8, **kw)
    m = RecAdapterForCausalLM(cfg)
    if attn != 'sdpa': m.lm.set_attn_implementation(attn)
    return m.eval()

@pytest.fixture
def batch(): return make_batch()

def real(batch): return batch['attention_mask'].bool()

@pytest.mark.parametrize('fam', FAMILIES)
def test_zero_init_equals_base(fam, batch):
    m = build(fam)
    assert m.intra_position_embeddings.weight.abs().sum() == 0
    mask = prefix_lm_mask(batch['prefix_len'], batch['attention_mask'])
    with torch.no_grad():
        out = m(**batch).logits
        ref = m.lm(input_ids=batch['input_ids'], position_ids=batch['position_ids'][:, 0], attention_mask=mask).logits
        torch.testing.assert_close(out, ref)
        # prefix_len 0, positions 0..n-1, no padding: the plain causal base model
        x = batch['input_ids'][:1, :11]
        causal = m(input_ids=x, position_ids=torch.arange(11)[None], prefix_len=torch.tensor([0])).logits
        torch.testing.assert_close(causal, m.lm(input_ids=x).logits)

@pytest.mark.parametrize('fam', FAMILIES)
@pytest.mark.parametrize('attn', ['sdpa', 'eager'])
def test_mask_applied(fam, attn, batch):
    m = build(fam, attn)
    assert m.lm.config._attn_implementation == attn
    with torch.no_grad(): base = m(**batch).logits
    def changed(r, t):
        b = {k: v.clone() for k, v in batch.items()}; b['input_ids'][r, t] = 3
        with torch.no_grad(): return m(**b).logits
    after = changed(0, 8)  # a Part B token of sample 0: nothing before it moves, the later Part B tokens do
    torch.testing.assert_close(after[0, :8], base[0, :8])
    assert (after[0, 8:11] - base[0, 8:11]).abs().max() > 1e-4
    after = changed(0, 5)  # the last Part A token: the first Part A token sees it (bidirectional Part A)
    assert (after[0, 0] - base[0, 0]).abs().max() > 1e-4
    after = changed(1, 10)  # padding of sample 1: no real token sees it
    torch.testing.assert_close(after[1, :8], base[1, :8])
    torch.testing.assert_close(after[0], base[0])

def test_eager_matches_sdpa(batch):
    s, e = build('llama'), build('llama', 'eager')
    with torch.no_grad(): torch.testing.assert_close(s(**batch).logits[real(batch)], e(**batch).logits[real(batch)])

def test_attention_bias_forms():
    mask = prefix_lm_mask(torch.tensor([2]), torch.ones(1, 4))
    assert attention_bias(mask, 'sdpa', torch.float32).dtype == torch.bool
    add = attention_bias(mask, 'eager', torch.float16)
    assert add.dtype == torch.float16 and (add[mask] == 0).all() and (add[~mask] == torch.finfo(torch.float16).min).all()
    with pytest.raises(ValueError, match='does not apply a custom 4-D'): attention_bias(mask, 'flash_attention_2', torch.float16)

def test_infilling_loss_no_shift(batch):
    logits = torch.randn(2, 16, V)
    sel = batch['labels'] != -100
    want = torch.nn.functional.cross_entropy(logits[sel], batch['labels'][sel])
    torch.testing.assert_close(infilling_loss(logits, batch['labels']), want)
    torch.testing.assert_close(infilling_loss(logits, batch['labels'], num_items_in_batch=int(sel.sum())), want)

@pytest.mark.parametrize('fam', FAMILIES)
def test_intra_embeddings_get_gradients(fam, batch):
    m = build(fam).train()
    m(**batch).loss.backward()
    g = m.intra_position_embeddings.weight.grad
    assert g is not None and (g[:4].norm(dim=-1) > 0).all() and g[4:].abs().sum() == 0
    big = batch['position_ids'] * 3   # ids past the table's end share its last row (the documented clamp)
    cut = torch.stack([big[:, 0], big[:, 1].clamp(max=m.config.max_intra - 1)], 1)
    with torch.no_grad(): assert torch.equal(m(**{**batch, 'position_ids': big}).logits, m(**{**batch, 'position_ids': cut}).logits)
    with pytest.raises(ValueError, match='must be >= 0'): m(**{**batch, 'position_ids': -batch['position_ids']})

@pytest.mark.parametrize('layout', ['inplace', 'append'])
def test_layouts_need_base_row_and_start_as_base_model(layout, batch):
    "Outside 'glm' the adapter takes (inter, intra, base) rows; with zero tables it equals the base model fed the base row."
    m = build('llama', layout=layout).eval()
    assert m.config.layout == layout and m.inter_position_embeddings.weight.abs().sum() == 0
    with pytest.raises(ValueError, match='inter, intra, base'): m(**batch)
    pos = batch['position_ids']; base = torch.arange(pos.shape[-1]).expand(pos.shape[0], -1)
    b3 = {**batch, 'position_ids': torch.cat([pos, base[:, None]], 1)}
    mask = prefix_lm_mask(batch['prefix_len'], batch['attention_mask'])
    with torch.no_grad():
        ref = m.lm(input_ids=batch['input_ids'], position_ids=base, attention_mask=mask).logits
        assert torch.allclose(m(**b3).logits, ref, atol=1e-5)
    with pytest.raises(ValueError, match='layout must be one of'): build('llama', layout='rope')

@pytest.mark.parametrize('fam', FAMILIES)
def test_peft_lora_trains_and_round_trips(fam, batch, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model
    m = build(fam)
    assert lora_targets(m) == (LORA_TARGETS['gpt2'] if fam == 'gpt2' else LORA_TARGETS['llama'])
    m.save_pretrained(tmp_path / 'base')
    pm = get_peft_model(m, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=lora_targets(m),
                                      modules_to_save=['intra_position_embeddings']))
    trainable = {n for n, p in pm.named_parameters() if p.requires_grad}
    assert any('lora_' in n for n in trainable) and any('intra_position_embeddings' in n for n in trainable)
    assert not any('embed_tokens' in n or 'wte' in n for n in trainable)
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(5):
        loss = pm(**batch).loss; opt.zero_grad(); loss.backward(); opt.step(); losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    pm.eval()
    with torch.no_grad(): want = pm(**batch).logits
    pm.save_pretrained(tmp_path / 'lora')
    back = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tmp_path / 'base'), tmp_path / 'lora').eval()
    with torch.no_grad(): torch.testing.assert_close(back(**batch).logits, want)

@pytest.mark.parametrize('fam', FAMILIES)
def test_save_load_round_trip(fam, batch, tmp_path):
    m = build(fam)
    with torch.no_grad(): m.intra_position_embeddings.weight.normal_()  # trained-looking table
    m.save_pretrained(tmp_path)
    back = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(back) is RecAdapterForCausalLM and back.config.max_intra == 8
    assert back.lm.config._attn_implementation == 'sdpa'
    with torch.no_grad(): torch.testing.assert_close(back(**batch).logits, m(**batch).logits, rtol=0, atol=0)
    eager = RecAdapterForCausalLM.from_pretrained(tmp_path, attn_implementation='eager').eval()
    assert eager.lm.config._attn_implementation == 'eager'
    with torch.no_grad(): torch.testing.assert_close(eager(**batch).logits[real(batch)], m(**batch).logits[real(batch)])

@pytest.mark.parametrize('fam', FAMILIES)
def test_resize_token_embeddings(fam, batch, tmp_path):
    m = build(fam)
    m.resize_token_embeddings(V + 7)
    assert m.get_input_embeddings().weight.shape[0] == V + 7 == m.get_output_embeddings().weight.shape[0]
    assert m.config.base_config.vocab_size == V + 7
    x = {**batch, 'input_ids': batch['input_ids'].clone()}; x['input_ids'][0, 1] = V + 6  # a new token
    m.save_pretrained(tmp_path)
    back = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad(): torch.testing.assert_close(back(**x).logits, m(**x).logits)

def test_from_base_keeps_weights(batch, tmp_path):
    lm = AutoModelForCausalLM.from_config(tiny_base_config('llama', vocab_size=V, hidden_size=32))
    lm.save_pretrained(tmp_path)
    lm = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation='eager').eval()
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    a = RecAdapterForCausalLM.from_base(lm, max_intra=8).eval()
    assert a.lm is lm and a.lm.config._attn_implementation == 'eager'
    assert all(torch.equal(before[k], v) for k, v in a.lm.state_dict().items())
    mask = attention_bias(prefix_lm_mask(batch['prefix_len'], batch['attention_mask']), 'eager', torch.float32)
    with torch.no_grad():
        ref = lm(input_ids=batch['input_ids'], position_ids=batch['position_ids'][:, 0], attention_mask=mask).logits
        torch.testing.assert_close(a(**batch).logits, ref)

def test_lora_targets_families():
    from torch import nn
    class GLMish(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = nn.ModuleDict(dict(query_key_value=nn.Linear(2, 6), dense=nn.Linear(2, 2)))
            self.mlp = nn.ModuleDict(dict(dense_h_to_4h=nn.Linear(2, 8), dense_4h_to_h=nn.Linear(8, 2)))
    assert lora_targets(GLMish()) == ['query_key_value', 'dense', 'dense_h_to_4h', 'dense_4h_to_h']
    assert lora_targets(build('qwen2').lm) == LORA_TARGETS['llama']
    with pytest.raises(ValueError, match='target_modules'): lora_targets(nn.Linear(2, 2))

@pytest.mark.parametrize('fam', FAMILIES)
def test_cache_decode_equals_full_forward(fam, batch):
    m = build(fam)
    with torch.no_grad():
        m.intra_position_embeddings.weight.normal_()
        full = m(**batch).logits
        p = 6  # sample 0's Part A; sample 1 already holds Part B tokens in this prompt
        cache = DynamicCache(config=m.lm.config)
        steps = [m(input_ids=batch['input_ids'][:, :p], position_ids=batch['position_ids'][..., :p],
                   attention_mask=batch['attention_mask'][:, :p], prefix_len=batch['prefix_len'], cache=cache,
                   use_cache=True).logits]
        for t in range(p, 16):
            out = m(input_ids=batch['input_ids'][:, t:t + 1], position_ids=batch['position_ids'][..., t:t + 1],
                    attention_mask=batch['attention_mask'][:, :t + 1], prefix_len=batch['prefix_len'], cache=cache)
            steps.append(out.logits)
        assert cache.get_seq_length() == 16
    torch.testing.assert_close(torch.cat(steps, 1)[real(batch)], full[real(batch)])
    with pytest.raises(ValueError, match='attention_mask must cover'):
        m(input_ids=batch['input_ids'][:, :1], attention_mask=batch['attention_mask'][:, :1], cache=cache)

@pytest.mark.parametrize('fam', FAMILIES)
def test_generate_follows_glm_positions(fam, batch):
    m = build(fam)
    with torch.no_grad(): m.intra_position_embeddings.weight.normal_()
    # LEFT-padded prompts of different lengths (Part A + [sop] of each sample); prefix_len counts the pads in front
    ids = torch.zeros(2, 7, dtype=torch.long); pos = torch.zeros(2, 2, 7, dtype=torch.long); am = torch.zeros(2, 7, dtype=torch.long)
    for r, n in ((0, 7), (1, 6)):
        ids[r, 7 - n:] = batch['input_ids'][r, :n]; pos[r, :, 7 - n:] = batch['position_ids'][r, :, :n]; am[r, 7 - n:] = 1
    prefix = batch['prefix_len'] + (7 - am.sum(1))
    gen = m.generate(input_ids=ids, position_ids=pos, attention_mask=am, prefix_len=prefix,
                     max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert gen.shape == (2, 10)
    for r, n in ((0, 7), (1, 6)):  # each sample alone, unpadded, scored by one full forward under GLM's positions
        seq = torch.cat([batch['input_ids'][r, :n], gen[r, 7:]])[None]
        last = batch['position_ids'][r, :, n - 1:n]
        new = torch.stack([last[0].repeat(3), last[1] + torch.arange(1, 4)])
        full_pos = torch.cat([batch['position_ids'][r, :, :n], new], -1)[None]
        with torch.no_grad():
            lg = m(input_ids=seq, position_ids=full_pos, prefix_len=batch['prefix_len'][r:r + 1]).logits
        assert torch.equal(lg[0, n - 1:-1].argmax(-1), gen[r, 7:]), (fam, r)
    beams = m.generate(input_ids=ids, position_ids=pos, attention_mask=am, prefix_len=prefix,
                       max_new_tokens=3, num_beams=3, num_return_sequences=2, do_sample=False, pad_token_id=0)
    assert beams.shape == (4, 10)
