"""Float64 parity of recsysllm_nb.glm with the public Hugging Face GLM code (`modeling_glm.py`, published with THUDM's
glm-large / glm-10b checkpoints), on the fixture data_samples/glm_parity: a tiny GLM built with that code and the logits
it computes (see the fixture's README.md; tools/make_glm_parity_fixture.py regenerates it, the tests never do).
Tolerance 1e-9 in the sep (Part A length) mask form, the full-mask form, and incremental decoding with the cache; and
the rule that sets the MLP's GELU from a checkpoint's origin (HF layout: erf, Megatron layout: tanh)."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import DynamicCache

from recsysllm_nb.glm_checkpoint import glm_checkpoint_origin, load_glm_checkpoint, read_state_dict

FIXTURE = Path(__file__).resolve().parents[1] / 'data_samples' / 'glm_parity'
TOL = 1e-9


@pytest.fixture(scope='module')
def ref():
    return load_file(FIXTURE / 'reference.safetensors')


@pytest.fixture(scope='module')
def pub():
    "The fixture folder as a user would load it: an HF-layout GLM folder, float64."
    return load_glm_checkpoint(FIXTURE, dtype=torch.float64)


def gap(a, b): return (a - b).abs().max().item()


def sep_logits(m, r, **kw):
    with torch.no_grad(): return m(input_ids=r['input_ids'], position_ids=r['position_ids'], prefix_len=r['sep'], **kw).logits


def test_fixture_is_small_and_float64():
    assert sum(p.stat().st_size for p in FIXTURE.iterdir()) < 400_000
    src = json.loads((FIXTURE / 'source.json').read_text())
    assert src['activation_in_public_code'] == 'GELUActivation()' and len(src['code']['sha256']) == 2
    assert json.loads((FIXTURE / 'config.json').read_text())['model_type'] == 'glm'      # GLM's own config, not ours
    sd = read_state_dict(FIXTURE)
    assert all(k.startswith('glm.') and v.dtype == torch.float64 for k, v in sd.items())
    assert sd['glm.transformer.layers.0.mlp.dense_h_to_4h.weight'].std() > 0.4           # far from the 0.02 init


def test_hf_folder_loads_with_erf_gelu(pub):
    r = pub.load_report
    assert r.ok and (r.origin, r.hidden_act, pub.config.hidden_act) == ('hf', 'gelu', 'gelu')
    assert pub.lm_head.weight.dtype == torch.float64 and "(hf, GELU 'gelu')" in str(r)


def test_sep_form(pub, ref):
    assert gap(sep_logits(pub, ref), ref['logits_sep']) < TOL
    ones = torch.ones_like(ref['input_ids'])                                  # an explicit all-real 2-D mask: the same
    assert gap(sep_logits(pub, ref, attention_mask=ones), ref['logits_sep']) < TOL


def test_full_mask_form(pub, ref):
    with torch.no_grad():
        full = pub(input_ids=ref['input_ids'], position_ids=ref['position_ids'],
                   attention_mask=ref['full_mask'].bool()).logits
        assert gap(full, ref['logits_full']) < TOL                            # every row, padding rows included
        pad = torch.ones(1, 16, dtype=torch.long); pad[0, 13:] = 0           # sample 0 as a padding mask + prefix_len
        s0 = pub(input_ids=ref['input_ids'][:1], position_ids=ref['position_ids'][:1], attention_mask=pad,
                 prefix_len=ref['sep'][:1]).logits
    assert gap(s0[0, :13], ref['logits_full'][0, :13]) < TOL
    assert gap(ref['logits_full'][1], ref['logits_sep'][1]) > 1e-3           # the two mask forms do differ here


def test_incremental_decoding_with_cache(pub, ref):
    "Part A in one pass, then [sop] and the public code's greedy tokens one at a time through a DynamicCache."
    ids, pos, sep = ref['gen_input_ids'], ref['gen_position_ids'], ref['gen_sep']
    toks, tpos = ref['gen_tokens'], ref['gen_step_position_ids']
    la = int(sep[0])
    cache, out = DynamicCache(config=pub.config), []
    with torch.no_grad():
        o = pub(input_ids=ids[:, :la], position_ids=pos[..., :la], prefix_len=sep, cache=cache, use_cache=True)
        out.append(o.logits)
        feed = [(ids[:, la:la + 1], pos[..., la:la + 1])] + [(toks[:, k:k + 1], tpos[..., k:k + 1]) for k in range(4)]
        for t, (x, p) in enumerate(feed):
            o = pub(input_ids=x, position_ids=p, attention_mask=torch.ones(2, la + t + 1, dtype=torch.long),
                    prefix_len=sep, cache=o.cache)
            out.append(o.logits)
    ours = torch.cat(out, 1)
    public = torch.cat([ref['gen_prompt_logits'], ref['gen_step_logits']], 1)
    assert ours.shape == public.shape == (2, 13, 64)
    assert gap(ours, public) < TOL
    assert torch.equal(ours[:, la:-1].argmax(-1), toks)                       # greedy: the same tokens


def test_generate_picks_the_public_tokens(pub, ref):
    g = pub.generate(input_ids=ref['gen_input_ids'], position_ids=ref['gen_position_ids'], prefix_len=ref['gen_sep'],
                     attention_mask=torch.ones_like(ref['gen_input_ids']), max_new_tokens=5, do_sample=False,
                     pad_token_id=0, output_logits=True, return_dict_in_generate=True)
    assert torch.equal(g.sequences[:, 9:13], ref['gen_tokens'])
    public = torch.cat([ref['gen_prompt_logits'][:, -1:], ref['gen_step_logits']], 1)
    assert gap(torch.stack(g.logits, 1).double(), public) < 1e-5              # generate hands out float32 logits


def test_tanh_gelu_misses_the_public_code(ref):
    "The same weights with GLM's Megatron GELU (tanh form) are off by far more than the tolerance."
    tanh = load_glm_checkpoint(FIXTURE, dtype=torch.float64, hidden_act='gelu_tanh')
    assert tanh.config.hidden_act == 'gelu_tanh'
    assert gap(sep_logits(tanh, ref), ref['logits_sep']) > 1e-4


def test_origin_sets_the_gelu(pub, ref, tmp_path):
    sd = read_state_dict(FIXTURE)
    mega = tmp_path / 'megatron'; mega.mkdir()
    torch.save({'iteration': 1, 'module': {k.removeprefix('glm.'): v for k, v in sd.items()}},
               mega / 'mp_rank_00_model_states.pt')
    assert glm_checkpoint_origin(mega) == glm_checkpoint_origin(mega / 'mp_rank_00_model_states.pt') == 'megatron'
    assert glm_checkpoint_origin(FIXTURE) == glm_checkpoint_origin(FIXTURE / 'model.safetensors') == 'hf'
    assert glm_checkpoint_origin(sd) is None
    m = load_glm_checkpoint(mega, pub.config)                                 # Megatron: tanh, whatever the config says
    assert (m.load_report.origin, m.config.hidden_act, pub.config.hidden_act) == ('megatron', 'gelu_tanh', 'gelu')
    assert gap(sep_logits(m, ref), ref['logits_sep']) > 1e-4
    forced = load_glm_checkpoint(mega, pub.config, hidden_act='gelu')         # forced to erf: the HF code's logits
    assert gap(sep_logits(forced, ref), ref['logits_sep']) < TOL
    f = load_glm_checkpoint(FIXTURE / 'model.safetensors', m.config)         # an HF file: erf, whatever the config says
    assert f.config.hidden_act == 'gelu' and gap(sep_logits(f, ref), ref['logits_sep']) < TOL
    for act in ('gelu', 'gelu_tanh'):                                         # a state dict in memory: the config decides
        cfg = load_glm_checkpoint(sd, pub.config, hidden_act=act).config
        assert load_glm_checkpoint(sd, cfg).config.hidden_act == act
    pub.save_pretrained(tmp_path / 'ours')                                    # saved here: its config.json keeps 'gelu'
    assert glm_checkpoint_origin(tmp_path / 'ours') is None
    back = load_glm_checkpoint(tmp_path / 'ours')
    assert back.config.hidden_act == 'gelu' and gap(sep_logits(back, ref), ref['logits_sep']) < TOL
