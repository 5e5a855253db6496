"""Properties of recsysllm_nb.positions against plain per-token loops (the rules as the paper states them)."""
import numpy as np
import torch
import pytest
from hypothesis import given, settings, strategies as st

from recsysllm_nb.positions import (run_counter, continues_entity, part_a_intra, part_b_intra, span_starts, glm_block_ids,
                                    inter_positions, position_ids_2d, prefix_lm_mask, attention_compact, expand_attention)

# ---- plain loop oracles -------------------------------------------------------------------------------------------
def loop_part_a_intra(ent):
    out, prev = [], None
    for t, e in enumerate(ent):
        if e < 0: out.append(0)
        elif t > 0 and ent[t - 1] == e: out.append(out[-1] + 1)
        else: out.append(1)
    return out

def loop_part_b_intra(ent, start):
    out = []
    for t in range(len(ent)):
        if start[t]: out.append(1)
        elif t > 0 and start[t - 1]: out.append(2)
        elif t > 0 and ent[t] >= 0 and ent[t] == ent[t - 1]: out.append(out[-1] + 1)
        else: out.append(1)
    return out

def loop_mask(p, valid, l):
    m = np.zeros((l, l), bool)
    for i in range(l):
        for j in range(l):
            if i < valid: m[i, j] = j < valid and (j < p or j <= i)
            else: m[i, j] = i == j
    return m

# ---- strategies ---------------------------------------------------------------------------------------------------
@st.composite
def layouts(draw):
    "A random original stream of units (entities of 1-5 tokens, plain tokens), masked at random whole units."
    n_units = draw(st.integers(1, 40))
    sizes = draw(st.lists(st.integers(1, 5), min_size=n_units, max_size=n_units))
    is_ent = draw(st.lists(st.booleans(), min_size=n_units, max_size=n_units))
    masked = draw(st.lists(st.booleans(), min_size=n_units, max_size=n_units))
    entity, unit = [], []
    k = 0
    for u, (sz, e) in enumerate(zip(sizes, is_ent)):
        sz = sz if e else 1
        entity += [k] * sz if e else [-1]
        k += bool(e)
        unit += [u] * sz
    entity, unit = np.array(entity), np.array(unit)
    # spans = maximal runs of masked units
    a_entity, mask_pos, b_span, b_entity, spans = [], [], [], [], []
    u = 0
    while u < n_units:
        if masked[u]:
            v = u
            while v < n_units and masked[v]: v += 1
            toks = np.flatnonzero((unit >= u) & (unit < v))
            mask_pos.append(len(a_entity)); a_entity.append(-1)
            b_span += [len(spans)] * (len(toks) + 1); b_entity += [-1] + entity[toks].tolist()
            spans.append((toks[0], toks[-1] + 1)); u = v
        else:
            toks = np.flatnonzero(unit == u)
            a_entity += entity[toks].tolist(); u += 1
    return dict(entity=entity, a_entity=np.array(a_entity, int), mask_pos=np.array(mask_pos, int),
                b_span=np.array(b_span, int), b_entity=np.array(b_entity, int), spans=spans)

# ---- tests ---------------------------------------------------------------------------------------------------------
def test_paper_figure_1():
    pos = position_ids_2d(np.array([-1, -1, -1, 1, 1]), np.array([0, 2]), np.array([0, 0, 0, 0, 1, 1]),
                          np.array([-1, 0, 0, 0, -1, -1]))
    assert pos[1].tolist() == [0, 0, 0, 1, 2, 1, 2, 3, 4, 1, 2]
    assert pos[0].tolist() == [0, 1, 2, 3, 4, 0, 0, 0, 0, 2, 2]

@settings(max_examples=200, deadline=None)
@given(layouts())
def test_positions_follow_rules(lay):
    la = len(lay['a_entity'])
    pos = position_ids_2d(lay['a_entity'], lay['mask_pos'], lay['b_span'], lay['b_entity'])
    assert pos.dtype == np.int64 and pos.shape == (2, la + len(lay['b_span']))
    # every Part B token's inter-position is its mask token's position, and that position holds a mask token
    for t, s in enumerate(lay['b_span']):
        assert pos[0, la + t] == lay['mask_pos'][s]
        assert lay['a_entity'][lay['mask_pos'][s]] == -1
    assert pos[0, :la].tolist() == list(range(la))
    assert pos[1, :la].tolist() == loop_part_a_intra(lay['a_entity'].tolist())
    start = span_starts(lay['b_span'])
    assert pos[1, la:].tolist() == loop_part_b_intra(lay['b_entity'].tolist(), start.tolist())
    # a span that is exactly one entity counts 1..len+1, as GLM's block ids do
    block_ids = position_ids_2d(lay['a_entity'], lay['mask_pos'], lay['b_span'], lay['b_entity'], block_ids=True)
    assert (block_ids[1, :la] == 0).all() and (block_ids[0] == pos[0]).all()
    for s in range(len(lay['mask_pos'])):
        sel = np.flatnonzero(lay['b_span'] == s)
        assert block_ids[1, la + sel].tolist() == list(range(1, len(sel) + 1))
        ents = lay['b_entity'][sel[1:]]
        if ents[0] >= 0 and (ents == ents[0]).all(): assert pos[1, la + sel].tolist() == list(range(1, len(sel) + 1))

@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(-1, 3), st.booleans()), max_size=60))
def test_part_b_intra_any_stream(toks):
    ent = np.array([e for e, _ in toks], int); start = np.array([s for _, s in toks], bool)
    got = part_b_intra(continues_entity(ent), start)
    assert got.tolist() == loop_part_b_intra(ent.tolist(), start.tolist())
    # concatenating two Part Bs (each opening with [sop]) gives the concatenated ids
    if len(toks) and start[0]:
        both = part_b_intra(continues_entity(np.r_[ent, ent]), np.r_[start, start])
        assert both.tolist() == got.tolist() * 2

@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-1, 3), max_size=60))
def test_part_a_intra_and_counter(ent):
    ent = np.array(ent, int)
    assert part_a_intra(ent).tolist() == loop_part_a_intra(ent.tolist())
    r = np.array([e < 0 for e in ent], bool)
    got = run_counter(r)
    exp, c = [], 0
    for t, x in enumerate(r): c = 1 if (x or t == 0) else c + 1; exp.append(c)
    assert got.tolist() == exp

@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), min_size=1, max_size=5), st.integers(0, 8))
def test_prefix_lm_mask_rule(lens, extra):
    a = np.array([x for x, _ in lens]); b = np.array([y for _, y in lens])
    comp = attention_compact(a, b)
    l = int(comp[:, 1].max()) + extra
    m = expand_attention(comp, l)
    assert m.dtype == torch.bool and m.shape == (len(lens), 1, l, l)
    for k, (p, v) in enumerate(comp):
        exp = loop_mask(p, v, l)
        assert (m[k, 0].numpy() == exp).all()
        assert not m[k, 0, :v, v:].any()          # padding never attended by real tokens
        assert m[k, 0].any(-1).all()              # no all-False row
    am = (np.arange(l)[None] < comp[:, 1:]).astype(np.int64)
    assert torch.equal(prefix_lm_mask(torch.as_tensor(comp[:, 0]), torch.as_tensor(am)), m)

def test_errors_are_clear():
    with pytest.raises(ValueError, match='one length'): part_b_intra(np.zeros(2, bool), np.zeros(3, bool))
    with pytest.raises(ValueError, match='b_span'): inter_positions(3, np.array([0]), np.array([1]))
    with pytest.raises(ValueError, match='batch'): prefix_lm_mask([1, 2], np.ones((3, 4)))
    with pytest.raises(ValueError, match='exceeds'): expand_attention(attention_compact([2], [3]), 4)

def test_glm_block_ids():
    assert glm_block_ids(np.array([1, 0, 0, 1, 0], bool)).tolist() == [1, 2, 3, 1, 2]
    assert span_starts(np.array([0, 0, 1, 1, 1, 2])).tolist() == [True, False, True, False, False, True]
