"""recsysllm_nb.trie: constrained decoding yields only pool entities (random tiny models, random pools with prefix and
duplicate entities), decode-time positions equal the collator's on the same stream, beams are distinct, exclusions are
exact, beam scores equal ranking scores; on real MovieLens-100K: trie sequences equal the training tokens."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st, HealthCheck
from transformers import AutoModelForCausalLM

from recsysllm_nb.adapter import RecAdapterForCausalLM, tiny_base_config
from recsysllm_nb.collate import RecCollator, RecDataset, assemble_batch
from recsysllm_nb.entities import TokenizedSample, tokenize_samples
from recsysllm_nb.tokenizer import SpecialIds, demo_tokenizer, special_ids
from recsysllm_nb.glm import GLMForCausalLM, tiny_glm_config
from recsysllm_nb.masking import apply_spans
from recsysllm_nb.positions import position_ids_2d
from recsysllm_nb.trie import DynamicPositions, EntityTrie, Exclusion, decode_positions, entity_token_ids
from recsysllm_nb.decode import Prompt, generate_entities, model_layout, next_item_prompt, rank_candidates

IDS = SpecialIds(mask=0, smask=1, gmask=2, sop=3, eop=4, pad=5, eos=6)
V = 40                       # vocabulary of the random models
ENT = (10, 29)               # entity tokens come from here (st.integers is inclusive) ...
PLAIN = (30, V)              # ... plain tokens from here (never start or continue an entity)
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope='module')
def models():
    torch.manual_seed(0)
    glm = GLMForCausalLM(tiny_glm_config(vocab_size=V, max_sequence_length=64)).eval()
    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_config(tiny_base_config('llama', vocab_size=V, max_positions=64), attn_implementation='sdpa')
    ad = RecAdapterForCausalLM.from_base(base).eval()
    with torch.no_grad(): ad.intra_position_embeddings.weight.normal_(0, 0.5)   # let the intra ids matter
    return {'glm': glm, 'adapter': ad}


@st.composite
def pools(draw):
    "Random pools: sequences over ENT, plus a prefix entity and a duplicate name when possible."
    seqs = draw(st.lists(st.lists(st.integers(*ENT), min_size=1, max_size=5), min_size=1, max_size=10))
    seqs = [tuple(s) for s in seqs]
    if len(seqs[0]) > 1: seqs.append(seqs[0][:draw(st.integers(1, len(seqs[0]) - 1))])   # a prefix of another entity
    if draw(st.booleans()): seqs.append(seqs[-1])                                         # a duplicate name
    keys = [f'k{i}' for i in range(len(seqs))]
    return EntityTrie(seqs, keys, [f'name {s}' for s in seqs], eop=IDS.eop)


@st.composite
def prompts(draw, trie):
    la = draw(st.integers(3, 12))
    part_a = np.array(draw(st.lists(st.integers(7, V - 1), min_size=la, max_size=la)), np.int64)
    mp = draw(st.integers(0, la - 1)); part_a[mp] = IDS.mask
    seen = tuple(draw(st.lists(st.sampled_from(sorted(trie.tokens_of)), max_size=4)))
    return Prompt(part_a, np.full(la, -1, np.int32), mp, seen=seen)


@pytest.mark.parametrize('which', ['glm', 'adapter'])
@pytest.mark.parametrize('mode', ['greedy', 'sample', 'beam'])
@settings(max_examples=8, **SETTINGS)
@given(data=st.data())
def test_constrained_items_are_pool_entities(models, which, mode, data):
    trie = data.draw(pools())
    ps = [data.draw(prompts(trie)) for _ in range(data.draw(st.integers(1, 2)))]
    excl = data.draw(st.booleans())
    res = generate_entities(models[which], ps, trie, IDS, k=8, mode=mode, num_beams=6, n_samples=6, exclude_seen=excl,
                            seed=data.draw(st.integers(0, 3)))
    for p, hits in zip(ps, res):
        for h in hits:
            assert h.valid and h.tokens in trie and sorted(h.keys) == sorted(trie.keys_at(h.tokens)), h
            assert np.isfinite(h.score)
            if excl: assert not set(h.keys) <= set(p.seen), (h, p.seen)
        assert len({h.tokens for h in hits}) == len(hits)                       # distinct entities
        if not excl or set(trie.tokens_of) - set(p.seen): assert len(hits) >= 1


@settings(max_examples=15, **SETTINGS)
@given(trie=pools(), data=st.data())
def test_beams_distinct_and_scores_equal_ranking(models, trie, data):
    which = data.draw(st.sampled_from(['glm', 'adapter']))
    p = data.draw(prompts(trie))
    hits = generate_entities(models[which], p, trie, IDS, k=10, num_beams=8)
    assert len({h.tokens for h in hits}) == len(hits) and len(hits) >= 1
    ranked = {h.keys[0]: h.score for h in rank_candidates(models[which], p, trie, sorted(trie.tokens_of), IDS, batch_size=3)}
    for h in hits:
        for k in h.keys: assert abs(ranked[k] - h.score) < 1e-3, (h, ranked[k])


@settings(max_examples=10, **SETTINGS)
@given(trie=pools(), data=st.data())
def test_block_ids_generation_equals_collator_rule(models, trie, data):
    "block_ids=True: every generated token gets GLM's block id (`position_ids_2d(block_ids=True)`, the collator's rule), so the greedy score equals one full forward pass over Part A + [sop] + the tokens under those ids."
    which = data.draw(st.sampled_from(['glm', 'adapter']))
    p, model = data.draw(prompts(trie)), models[which]
    h = generate_entities(model, p, trie, IDS, k=1, mode='greedy', block_ids=True)[0]
    la, toks = len(p.part_a), list(h.tokens)
    pos = position_ids_2d(np.full(la, -1), np.array([p.mask_pos]), np.zeros(len(toks) + 1, np.int64),
                          np.full(len(toks) + 1, -1), block_ids=True, layout=model_layout(model))
    assert pos[1, la:].tolist() == list(range(1, len(toks) + 2))
    ids = torch.tensor([list(p.part_a) + [IDS.sop] + toks])
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=ids, position_ids=torch.from_numpy(pos)[None], prefix_len=torch.tensor([la]),
                                     attention_mask=torch.ones_like(ids)).logits[0, la:].float(), -1)
    want = lp.gather(1, torch.tensor(toks + [IDS.eop])[:, None]).sum().item()
    assert abs(want - h.score) < 1e-3, (want, h.score)
    none = EntityTrie([], [], eop=IDS.eop)   # plain text: entity-aware ids restart at 1, block ids keep counting
    free = [generate_entities(model, p, none, IDS, k=1, mode='greedy', constrain=False, valid_only=False, max_new_tokens=4, min_new_tokens=3,
                              block_ids=b)[0] for b in (False, True)]
    assert free[0].tokens != free[1].tokens or abs(free[0].score - free[1].score) > 1e-6   # the option is not ignored

@st.composite
def streams(draw):
    "A pool and a token stream of units (pool entities and plain tokens, a plain token between two entities), with spans."
    trie = draw(pools())
    seqs = sorted(trie.trie.keys())
    units, ent, k = [], [], 0
    for _ in range(draw(st.integers(1, 14))):
        if draw(st.booleans()) and (not units or ent[-1] < 0):
            s = draw(st.sampled_from(seqs)); units.append(list(s)); ent += [k] * len(s); k += 1
        else:
            units.append([draw(st.integers(*PLAIN))]); ent.append(-1)
    bounds = np.cumsum([0] + [len(u) for u in units])
    spans, u = [], draw(st.integers(0, 1))
    while u < len(units):                     # spans of 1..3 whole units, at least one unit apart
        n = draw(st.integers(1, 3)); e = min(u + n, len(units))
        spans.append((bounds[u], bounds[e])); u = e + 1 + draw(st.integers(0, 2))
    if not spans: spans = [(bounds[0], bounds[1])]
    ids = np.concatenate([np.array(x, np.int64) for x in units])
    ts = TokenizedSample(ids, np.array(ent, np.int32), np.zeros(len(ids), np.int32))
    return trie, ts, np.array(spans, np.int64)


@settings(max_examples=200, **SETTINGS)
@given(streams())
def test_decode_positions_equal_collator(case):
    trie, ts, spans = case
    ms = apply_spans(ts, spans, 'entity', IDS)
    batch = assemble_batch([ms], IDS.pad)                   # the collator's positions
    la = len(ms.part_a)
    for j in range(len(spans)):
        sel = np.flatnonzero(ms.b_span == j)
        want = batch['position_ids'][0, 1, la + sel]
        toks = ms.part_b_in[sel][1:]
        assert decode_positions(trie, toks).tolist() == want.tolist()
        # several beams at once, one step at a time, as inside generate(): the last column at every step
        dp, rows = DynamicPositions(trie), [list(toks), list(toks[::-1])]
        step = [1] + [int(dp.intra([r[:i + 1] for r in rows])[0, -1]) for i in range(len(toks))]
        assert step == want.tolist()


@settings(max_examples=150, **SETTINGS)
@given(trie=pools(), data=st.data())
def test_exclusion_is_exact(trie, data):
    excluded = set(data.draw(st.lists(st.sampled_from(sorted(trie.tokens_of)), max_size=len(trie))))
    ex = Exclusion(trie, excluded)
    reach, todo = set(), [()]
    while todo:                                            # every sequence the constrained decoder can end
        p = todo.pop()
        for t in trie.allowed_tensor(p, ex).tolist():
            if t == IDS.eop:
                if p: reach.add(p)
            else: todo.append(p + (t,))
    want = {s for s in trie.trie.keys() if not set(trie.keys_at(s)) <= excluded}
    assert reach == want


def test_trie_edge_cases():
    t = EntityTrie([[11, 12], [11], [11, 12], [13]], ['a', 'b', 'c', 'd'], eop=IDS.eop)
    assert sorted(t.keys_at((11, 12))) == ['a', 'c'] and t.keys_at((11,)) == ['b']
    assert t.allowed((11,)).tolist() == [IDS.eop, 12]          # a prefix entity: continue or end
    assert t.allowed(()).tolist() == [11, 13] and t.allowed((99,)).tolist() == []
    assert t.count(()) == 4 and t.count((11,)) == 3
    assert t.step((11,), 12) == (True, (11, 12)) and t.step((11, 12), 13) == (False, (13,)) and t.step((), 30) == (False, ())
    for bad, msg in [(([[]], ['a']), 'no tokens'), (([[1], [2]], ['a', 'a']), 'twice'), (([[4]], ['a']), 'eop')]:
        with pytest.raises(ValueError, match=msg): EntityTrie(*bad, eop=IDS.eop)


# ---- real MovieLens-100K ----

@pytest.fixture(scope='module')
def real():
    from recsysllm_nb.data import load_ml100k, leave_one_out
    from recsysllm_nb.textualize import item_names, textualize_corpus
    tok = demo_tokenizer(); tables = load_ml100k(); split = leave_one_out(tables); names = item_names(tables.items)
    corpus = textualize_corpus(tables, split, names=names)
    return dict(tok=tok, tables=tables, split=split, names=names, corpus=corpus, tokenized=tokenize_samples(corpus, tok),
                trie=EntityTrie.from_names(names, tok))


def test_trie_sequences_are_training_tokens(real):
    trie, bad, n = real['trie'], 0, 0
    for s, t in zip(real['corpus'], real['tokenized']):
        for j, e in enumerate(s.entities):
            if e.kind == 'item': n += 1; bad += trie.tokens_of[e.key] != tuple(t.input_ids[t.entity == j].tolist())
    assert n > 15000 and bad == 0


def test_real_masked_samples_positions(real):
    corpus, tok = real['corpus'], real['tok']
    pool = {(e.key if e.kind == 'item' else f'{e.key}={s.surface(j)}'): s.surface(j) for s in corpus for j, e in enumerate(s.entities)}
    full = EntityTrie.from_names(pool, tok)
    col = RecCollator(tok, max_length=256, return_tensors='np', seed=3)
    ex = [RecDataset(real['tokenized'])[i] for i in range(0, 943, 7)]
    batch, masked = col(ex), col.mask(ex)
    n = 0
    for r, ms in enumerate(masked):
        for j in range(len(ms.mask_pos)):
            sel = np.flatnonzero(ms.b_span == j); n += 1
            assert decode_positions(full, ms.part_b_in[sel][1:]).tolist() == batch['position_ids'][r, 1, len(ms.part_a) + sel].tolist()
    assert n > 200


def test_next_item_prompt_and_context(real):
    tok, sids = real['tok'], special_ids(real['tok'])
    p = next_item_prompt(real['tables'], real['split'], '7', tok, names=real['names'])
    assert (p.part_a == sids.mask).sum() == 1 and p.part_a[p.mask_pos] == sids.mask
    assert tok.decode(p.part_a[p.mask_pos - 1:].tolist()) == ';[MASK].'
    assert p.target is not None and len(p.seen) > 0
    with pytest.raises(ValueError, match='slot'): entity_token_ids(['x'], tok, context='no slot')


def test_recommend_console_script(real, tmp_path, capsys):
    from recsysllm_nb.recommend import recsysllm_recommend
    with pytest.raises(SystemExit) as e: recsysllm_recommend('1', model=str(tmp_path / 'none'))
    assert e.value.code == 2 and 'Train one first' in capsys.readouterr().err
    torch.manual_seed(0)
    m = GLMForCausalLM(tiny_glm_config(vocab_size=len(real['tok']), max_sequence_length=256))
    m.save_pretrained(tmp_path / 'm'); real['tok'].save_pretrained(tmp_path / 'm')
    assert recsysllm_recommend('1', k=3, model=str(tmp_path / 'm'), beams=5) is None   # a console script returns nothing
    out = capsys.readouterr().out.splitlines()
    assert out[0] == 'top 3 for user 1:' and len(out) == 4
    names = set(real['names'].values())
    assert all(l.split('. ', 1)[1].rsplit('  (', 1)[0] in names for l in out[1:])
