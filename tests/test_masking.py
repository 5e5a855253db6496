"""Property tests of recsysllm_nb.masking on random token streams with random entity and sentence layouts."""
from dataclasses import fields
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from recsysllm_nb.entities import TokenizedSample
from recsysllm_nb.masking import (LEVELS, MaskConfig, MaskedSample, apply_spans, apply_spans_batch, mask_batch,
                                  mask_sample, reconstruct, unit_bounds, sentence_spans)

class Sp:  # special ids outside the range of the synthetic tokens
    mask, smask, gmask, sop, eop, pad, eos = 1, 2, 3, 4, 5, 0, 6
SP = Sp()
MASK_ID = dict(entity=SP.mask, sentence=SP.smask, document=SP.gmask)

@st.composite
def samples(draw, max_units=120):
    "A token stream of plain tokens and multi-token entities, grouped into sentences with optional gaps between them."
    n_units = draw(st.integers(1, max_units))
    sizes = draw(st.lists(st.one_of(st.just(1), st.integers(1, 8)), min_size=n_units, max_size=n_units))
    is_ent = draw(st.lists(st.booleans(), min_size=n_units, max_size=n_units))
    cuts = draw(st.lists(st.booleans(), min_size=n_units, max_size=n_units))   # a sentence starts at this unit
    gaps = draw(st.lists(st.booleans(), min_size=n_units, max_size=n_units))   # a plain unit outside any sentence
    seed = draw(st.integers(0, 2**31 - 1))
    ent, sent, k, s = [], [], 0, -1
    for i in range(n_units):
        size = sizes[i] if is_ent[i] else 1
        if i == 0 or cuts[i]: s += 1
        sid = -1 if (gaps[i] and not is_ent[i]) else s
        ent += [k if is_ent[i] else -1] * size; sent += [sid] * size
        k += is_ent[i]
    n = len(ent)
    ids = np.random.default_rng(seed).integers(10, 1000, n)
    return TokenizedSample(input_ids=ids.astype(np.int64), entity=np.array(ent, np.int32), sentence=np.array(sent, np.int32))

CONFIGS = [MaskConfig(), MaskConfig(shuffle=True), MaskConfig.glm()]
common = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

def unit_sizes(tok, cfg):
    u = unit_bounds(tok, cfg.entity_aware); return u, np.diff(u)

def check_structure(tok, ms, cfg):
    "Invariants every MaskedSample has, whatever the level."
    ids, n = tok.input_ids, len(tok.input_ids)
    sp = ms.spans; m = len(sp)
    assert m >= 1 and sp.dtype == np.int64 and sp.shape == (m, 2)
    srt = sp[np.argsort(sp[:, 0])]
    assert (srt[:, 0] < srt[:, 1]).all() and srt[0, 0] >= 0 and srt[-1, 1] <= n
    assert (srt[1:, 0] >= srt[:-1, 1]).all()                               # no overlap
    if cfg.entity_aware:                                                    # no unit split
        u = unit_bounds(tok)
        assert np.isin(sp.ravel(), u).all(), (sp, u)
    L = sp[:, 1] - sp[:, 0]
    assert len(ms.part_a) == n - L.sum() + m
    assert ms.part_a.dtype == np.int64 and ms.a_entity.dtype == np.int32 and ms.b_entity.dtype == np.int32
    assert (ms.part_a[ms.mask_pos] == MASK_ID[ms.level]).all() and (ms.a_entity[ms.mask_pos] == -1).all()
    assert np.isin(ms.part_a, [SP.mask, SP.smask, SP.gmask]).sum() == m
    # mask_pos follows the span order: a later span (in the text) has a later mask token
    assert (np.argsort(ms.mask_pos, kind='stable') == np.argsort(sp[:, 0], kind='stable')).all()
    # Part B: [sop] + span in, span + [eop] out, span by span in Part B order
    assert len(ms.part_b_in) == len(ms.part_b_out) == len(ms.b_span) == len(ms.b_entity) == (L + 1).sum()
    assert (np.diff(ms.b_span) >= 0).all() and (np.bincount(ms.b_span, minlength=m) == L + 1).all()
    for j, (s, e) in enumerate(sp.tolist()):
        bi, bo, be = ms.part_b_in[ms.b_span == j], ms.part_b_out[ms.b_span == j], ms.b_entity[ms.b_span == j]
        assert bi[0] == SP.sop and bo[-1] == SP.eop and (bo[:-1] == bi[1:]).all()
        assert (bi[1:] == ids[s:e]).all()
        assert be[0] == -1 and (be[1:] == (tok.entity[s:e] if cfg.entity_aware else -1)).all()
    if not cfg.entity_aware: assert (ms.a_entity == -1).all() and (ms.b_entity == -1).all()
    else:                                                                   # kept tokens keep their entity index
        keep = np.ones(n, bool)
        for s, e in sp.tolist(): keep[s:e] = False
        a_plain = np.ones(len(ms.part_a), bool); a_plain[ms.mask_pos] = False
        assert (ms.a_entity[a_plain] == tok.entity[keep]).all()
    assert (reconstruct(ms) == ids).all()                                   # Part A + Part B give back the text
    if not cfg.shuffle: assert (np.diff(sp[:, 0]) > 0).all()                # chronological order

@common
@given(samples(), st.sampled_from(range(len(CONFIGS))), st.integers(0, 2**32 - 1))
def test_entity_level(tok, ci, seed):
    cfg = CONFIGS[ci]
    ms = mask_sample(tok, SP, np.random.default_rng(seed), cfg, level='entity')
    assert ms.level == 'entity'
    check_structure(tok, ms, cfg)
    u, size = unit_sizes(tok, cfg)
    U = len(size)
    srt = ms.spans[np.argsort(ms.spans[:, 0])]
    assert (srt[1:, 0] > srt[:-1, 1]).all()                                # spans never touch: >= 1 unit between
    su = np.searchsorted(u, srt)                                            # spans in unit offsets
    Mu, k = int((su[:, 1] - su[:, 0]).sum()), len(su)
    target = max(1, int(cfg.ratio * U))
    assert Mu < target + cfg.max_span_units                                 # stops at the first span reaching the target
    assert Mu >= target or Mu + k + cfg.max_span_units > U                  # ... unless the text is too short for it
    C = int((srt[:, 1] - srt[:, 0]).sum())                                  # masked tokens: bounded by unit sizes
    ss = np.sort(size)
    assert ss[:Mu].sum() <= C <= ss[::-1][:Mu].sum()

@common
@given(samples(), st.sampled_from(range(len(CONFIGS))), st.integers(0, 2**32 - 1))
def test_sentence_level(tok, ci, seed):
    cfg = CONFIGS[ci]
    ms = mask_sample(tok, SP, np.random.default_rng(seed), cfg, level='sentence')
    check_structure(tok, ms, cfg)
    sent, n = tok.sentence, len(tok.sentence)
    for s, e in ms.spans.tolist():                                          # each span is one whole sentence
        assert len(set(sent[s:e].tolist())) == 1 and sent[s] >= 0 or (sent < 0).all()
        assert (s == 0 or sent[s - 1] != sent[s]) and (e == n or sent[e] != sent[s])
    L = ms.spans[:, 1] - ms.spans[:, 0]
    target = max(1, int(cfg.ratio * n))
    total = int((sent >= 0).sum()) or n
    assert L.sum() >= min(target, total) and L.sum() - L.max() < target    # about `ratio`, at least one sentence

@common
@given(samples(), st.sampled_from(range(len(CONFIGS))), st.integers(0, 2**32 - 1))
def test_document_level(tok, ci, seed):
    cfg = CONFIGS[ci]
    ms = mask_sample(tok, SP, np.random.default_rng(seed), cfg, level='document')
    check_structure(tok, ms, cfg)
    n = len(tok.input_ids)
    assert ms.spans.shape == (1, 2) and ms.spans[0, 1] == n and ms.mask_pos[0] == len(ms.part_a) - 1
    frac = (n - ms.spans[0, 0]) / n
    assert 0.5 <= frac + 1e-12 and frac <= 1.0

@common
@given(samples(), st.sampled_from(range(len(CONFIGS))), st.integers(0, 2**32 - 1))
def test_drawn_level_deterministic_and_batched(tok, ci, seed):
    cfg = CONFIGS[ci]
    a = mask_sample(tok, SP, np.random.default_rng(seed), cfg)
    b = mask_sample(tok, SP, np.random.default_rng(seed), cfg)
    assert a.level in LEVELS
    for f in fields(MaskedSample): assert np.array_equal(getattr(a, f.name), getattr(b, f.name)), f.name
    check_structure(tok, a, cfg)
    # mask_batch makes exactly the draws of one mask_sample call per sample, in order
    toks = [tok, tok, tok]
    r1, r2 = np.random.default_rng(seed), np.random.default_rng(seed)
    got, want = mask_batch(toks, SP, r1, cfg), [mask_sample(t, SP, r2, cfg) for t in toks]
    for x, y in zip(got, want):
        for f in fields(MaskedSample): assert np.array_equal(getattr(x, f.name), getattr(y, f.name)), f.name

@common
@given(samples(), st.sampled_from(LEVELS), st.integers(0, 2**32 - 1))
def test_shuffle_only_reorders(tok, level, seed):
    a = mask_sample(tok, SP, np.random.default_rng(seed), MaskConfig(), level=level)
    b = mask_sample(tok, SP, np.random.default_rng(seed), MaskConfig(shuffle=True), level=level)
    o = np.argsort(b.spans[:, 0])
    assert np.array_equal(b.spans[o], a.spans) and np.array_equal(b.mask_pos[o], a.mask_pos)
    assert np.array_equal(a.part_a, b.part_a)

@common
@given(samples(), st.sampled_from(LEVELS), st.integers(0, 2**32 - 1))
def test_glm_mode_is_token_level(tok, level, seed):
    "GLM mode = the same sampler with every token its own unit (an entity-free stream), shuffled, entity indices dropped."
    plain = TokenizedSample(input_ids=tok.input_ids, entity=np.full(len(tok.entity), -1, np.int32), sentence=tok.sentence)
    g = mask_sample(tok, SP, np.random.default_rng(seed), MaskConfig.glm(), level=level)
    p = mask_sample(plain, SP, np.random.default_rng(seed), MaskConfig(shuffle=True), level=level)
    for f in fields(MaskedSample): assert np.array_equal(getattr(g, f.name), getattr(p, f.name)), f.name

def glm_reference(ids, spans, order, mask_id, sop, eop):
    "GLM's make_block_data written out with plain loops: tokens, targets, 2D positions, sep (for the given spans)."
    spans = [tuple(x) for x in spans]
    pos = [1] * len(ids)
    for s, e in spans:
        for t in range(s + 1, e): pos[t] = 0
    pos = list(np.cumsum(pos) - 1)
    src, src_pos, last = [], [], 0
    for s, e in sorted(spans):
        src += list(ids[last:s]) + [mask_id]; src_pos += pos[last:s] + [pos[s]]; last = e
    src += list(ids[last:]); src_pos += pos[last:]
    tgt_in, tgt_out, tgt_pos, tgt_blk = [], [], [], []
    for j in order:
        s, e = spans[j]
        tgt_in += [sop] + list(ids[s:e]); tgt_out += list(ids[s:e]) + [eop]
        tgt_pos += [pos[s]] * (e - s + 1); tgt_blk += list(range(1, e - s + 2))
    return (np.array(src + tgt_in), np.array(src + tgt_out)[len(src):], np.array([src_pos + tgt_pos, [0] * len(src) + tgt_blk]),
            len(src))

@common
@given(samples(), st.sampled_from(LEVELS), st.integers(0, 2**32 - 1))
def test_glm_mode_reproduces_glm_block_data(tok, level, seed):
    from recsysllm_nb.positions import position_ids_2d
    ms = mask_sample(tok, SP, np.random.default_rng(seed), MaskConfig.glm(), level=level)
    chrono = ms.spans[np.argsort(ms.spans[:, 0])]
    order = [int(np.flatnonzero((chrono == sp).all(1))[0]) for sp in ms.spans]
    tokens, targets, pos, sep = glm_reference(tok.input_ids, chrono, order, MASK_ID[level], SP.sop, SP.eop)
    assert len(ms.part_a) == sep
    assert np.array_equal(np.concatenate([ms.part_a, ms.part_b_in]), tokens)
    assert np.array_equal(ms.part_b_out, targets)
    assert np.array_equal(position_ids_2d(ms.a_entity, ms.mask_pos, ms.b_span, ms.b_entity, block_ids=True), pos)

def _long_sample(n_units=400, seed=0):
    r = np.random.default_rng(seed)
    ent, sent, k = [], [], 0
    for i in range(n_units):
        if r.random() < 0.4: ent += [k] * int(r.integers(2, 9)); k += 1
        else: ent.append(-1)
        sent += [len(sent) // 30] * (len(ent) - len(sent))
    ent = np.array(ent, np.int32)
    us = np.cumsum(np.r_[True, (ent[1:] != ent[:-1]) | (ent[1:] < 0)]) - 1
    return TokenizedSample(r.integers(10, 1000, len(ent)).astype(np.int64), ent, (us // 15).astype(np.int32))

def test_batch_with_mixed_levels_matches_single():
    toks = [_long_sample(int(u), seed) for seed, u in enumerate([1, 3, 20, 60, 150, 400])]
    lv = ['entity', 'document', 'sentence', 'entity', 'sentence', 'document']
    r1, r2 = np.random.default_rng(3), np.random.default_rng(3)
    got = mask_batch(toks, SP, r1, MaskConfig(shuffle=True), levels=lv)
    want = [mask_sample(t, SP, r2, MaskConfig(shuffle=True), level=l) for t, l in zip(toks, lv)]
    for x, y in zip(got, want):
        for f in fields(MaskedSample): assert np.array_equal(getattr(x, f.name), getattr(y, f.name)), f.name

def test_statistics_match_glm_laws():
    "Level mix, span-length law and masked fractions, on 3000 draws (fixed seed)."
    tok, rng = _long_sample(), np.random.default_rng(1)
    cfg = MaskConfig()
    out = mask_batch([tok] * 3000, SP, rng, cfg)
    lv = np.array([m.level for m in out])
    freq = [(lv == l).mean() for l in LEVELS]
    assert np.allclose(freq, cfg.level_probs, atol=0.03), freq
    n = len(tok.input_ids)
    ent = [m for m in out if m.level == 'entity']
    frac = np.array([(m.spans[:, 1] - m.spans[:, 0]).sum() / n for m in ent])
    assert abs(frac.mean() - 0.15) < 0.02, frac.mean()
    u = unit_bounds(tok)
    ul = np.concatenate([np.diff(np.searchsorted(u, m.spans), axis=1).ravel() for m in ent])
    k = np.arange(1, 40)
    assert abs(ul.mean() - (k * cfg.length_probs).sum()) < 0.1               # zero-truncated Poisson(3) mean ~3.16
    doc = np.array([(n - m.spans[0, 0]) / n for m in out if m.level == 'document'])
    assert doc.min() >= 0.5 and doc.max() <= 1.0 and abs(doc.mean() - 0.75) < 0.03

def test_errors_are_clear():
    with pytest.raises(ValueError, match='ratio'): MaskConfig(ratio=0)
    with pytest.raises(ValueError, match='level_probs'): MaskConfig(level_probs=(1, 0))
    with pytest.raises(ValueError, match='doc_min_ratio'): MaskConfig(doc_min_ratio=0.8, doc_max_ratio=0.6)
    empty = TokenizedSample(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32))
    with pytest.raises(ValueError, match='no tokens'): mask_sample(empty, SP, np.random.default_rng(0))
    bad = TokenizedSample(np.arange(10, 16), np.array([-1, 0, 0, 0, -1, -1], np.int32), np.array([0, 0, 1, 1, 1, 1], np.int32))
    with pytest.raises(ValueError, match='inside entity 0'): sentence_spans(bad, MaskConfig(), np.random.default_rng(0))
    with pytest.raises(ValueError, match='level must be'): mask_sample(bad, SP, np.random.default_rng(0), level='word')

def test_unit_cut_edges():
    "A cut inside an entity moves past it (or back to its start); unit boundaries stay; an entity at the end gives n."
    from recsysllm_nb.masking import unit_cut
    ent = np.array([0, 0, 0, -1, 1, 1, -1, 2, 2], np.int32)                 # units: 0-2, 3, 4-5, 6, 7-8
    assert [unit_cut(ent, c) for c in range(10)] == [0, 3, 3, 3, 4, 6, 6, 7, 9, 9]
    assert [unit_cut(ent, c, back=True) for c in range(10)] == [0, 0, 0, 3, 4, 4, 6, 7, 7, 9]
    assert unit_cut(np.array([-1, -1, -1]), 1) == 1 and unit_cut([3, 3, 4, 4], 2) == 2   # plain tokens; entities meet
