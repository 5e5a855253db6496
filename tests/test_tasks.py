"""recsysllm_nb.tasks: templates (seen / unseen), samples from the one split without leaks, skipping families the data
cannot feed, the blank-infilling round trip, determinism."""
import dataclasses, re, warnings
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
from recsysllm_nb.data import Tables, load_ml100k, leave_one_out
from recsysllm_nb.sources import load_p5
from recsysllm_nb.textualize import item_names, check_sample
from recsysllm_nb.tokenizer import demo_tokenizer, special_ids
from recsysllm_nb.masking import reconstruct
from recsysllm_nb.tasks import (FAMILIES, FAMILY_LEVEL, TEMPLATES, Template, TaskSkipped, templates, build_tasks,
                                render, family_support, for_candidate, leaks)
from recsysllm_nb.task_infilling import to_masked, to_masked_batch

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / 'data_samples' / 'p5_fixture'
ML_FAMS = ['rating', 'sequential', 'direct']

def quiet(*a, **k):
    "build_tasks with the TaskSkipped warnings silenced."
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', TaskSkipped)
        return build_tasks(*a, **k)

@pytest.fixture(scope='module')
def ml():
    t = load_ml100k(); return t, leave_one_out(t), item_names(t.items)

@pytest.fixture(scope='module')
def p5():
    t = load_p5(FIXTURE); return t, leave_one_out(t), item_names(t.items)

@pytest.fixture(scope='module')
def ml_train(ml): return quiet(ml[0], ml[1])

@pytest.fixture(scope='module')
def p5_all(p5):
    t, s, _ = p5
    return {k: build_tasks(t, s, split_name=k, n_per_user=None if k == 'train' else 5) for k in ('train', 'valid', 'test')}

@pytest.fixture(scope='module')
def tok(): return demo_tokenizer()

# ---------------------------------------------------------------- templates
@pytest.mark.parametrize('fam,n', [('rating', 5), ('sequential', 5), ('explanation', 4), ('review', 3), ('direct', 4)])
def test_template_counts(fam, n):
    ts = templates(fam)
    assert len(ts) >= n and len(templates(fam, False)) >= 1 and len(templates(fam, True)) >= 1
    assert {t.id for t in templates(fam, True)}.isdisjoint({t.id for t in templates(fam, False)})
    assert len(templates(fam, True)) + len(templates(fam, False)) == len(ts)
    assert all(t.family == fam and 'answer' in t.slots for t in ts)
    if FAMILY_LEVEL[fam] == 'document': assert all(t.text.endswith('{answer}') for t in ts)

def test_template_kinds():
    d = templates('direct', True)
    assert any(t.choose for t in d) and any(not t.choose for t in d)
    assert {'feature' in t.slots for t in templates('explanation', True)} == {True, False}
    assert len(TEMPLATES) == sum(len(templates(f)) for f in FAMILIES)

def test_template_validation():
    with pytest.raises(ValueError, match='exactly one'): Template('rating', 'x', 'Rate {item}.')
    with pytest.raises(ValueError, match='unknown slot'): Template('rating', 'x', 'Rate {thing}: {answer}')
    with pytest.raises(ValueError, match='must end with'): Template('explanation', 'x', 'Why: {answer}.')
    with pytest.raises(ValueError, match='family'): Template('bogus', 'x', '{answer}')
    with pytest.raises(ValueError, match='unknown family'): templates('bogus')

def test_render_spans():
    s, (a, b) = render(TEMPLATES['sequential-1'], dict(history=[('A. B.', 'item', '1'), ('C', 'item', '2')],
                                                      answer=('D? E!', 'item', '3')))
    check_sample(s)
    assert s.text[a:b] == 'D? E!' and [e.key for e in s.entities] == ['1', '2', '3']
    assert not any(a < x < b or s.entities[0].start < x < s.entities[0].end for se in s.sentences for x in se)

# ---------------------------------------------------------------- seen / unseen
def test_training_uses_seen_templates_only(ml_train, p5_all):
    seen = {t.id for t in templates(seen=True)}
    for xs in (ml_train, p5_all['train']):
        assert xs and all(x.seen and x.template_id in seen and x.split == 'train' for x in xs)

def test_seen_false_for_training_is_an_error(p5):
    with pytest.raises(ValueError, match='seen templates only'): build_tasks(p5[0], p5[1], seen=False)

def test_eval_seen_selection(p5):
    t, s, _ = p5
    for sn in (True, False):
        xs = build_tasks(t, s, split_name='valid', seen=sn)
        assert xs and {x.seen for x in xs} == {sn}
    allx = build_tasks(t, s, split_name='valid')
    assert {x.seen for x in allx} == {True, False}

# ---------------------------------------------------------------- no leaks
def _mentioned(x):
    "Item ids a prompt mentions: its target, its candidates, its item entities."
    return {x.item_id, *x.candidates, *(e.key for e in x.sample.entities if e.kind == 'item')}

@pytest.mark.parametrize('which', ['ml', 'p5'])
def test_no_heldout_pair_in_training_prompts(which, ml, p5, ml_train, p5_all):
    t, s, names = ml if which == 'ml' else p5
    train = ml_train if which == 'ml' else p5_all['train']
    held = pd.concat([s.valid, s.test])
    assert leaks(train, held, names) == []
    bad = set(zip(held['user_id'], held['item_id']))
    assert not any((x.user_id, i) in bad for x in train for i in _mentioned(x))
    held_by_user = held.groupby('user_id')['item_id'].agg(list).to_dict()
    n_checked = 0
    for x in train:   # nor are the held-out items' names in the text, except inside another item's title that holds them
        text, items = x.sample.text, [(e.start, e.end, e.key) for e in x.sample.entities if e.kind == 'item']
        for i in held_by_user.get(x.user_id, ()):
            n_checked += 1
            for k in (m.start() for m in re.finditer(re.escape(names[i]), text)):
                assert any(a <= k and k + len(names[i]) <= b and key != i for a, b, key in items), \
                    f'{x.template_id} (user {x.user_id}): held-out item {i} {names[i]!r} at char {k} of the prompt'
    assert n_checked >= len(train)   # every prompt was checked against its user's held-out items
    pos = {k: v for k, v in zip(zip(s.train.user_id, s.train.item_id), s.train.groupby('user_id').cumcount())}
    assert all((x.user_id, x.item_id) in pos for x in train)                # targets are training interactions
    assert all(pos[(x.user_id, i)] < pos[(x.user_id, x.item_id)] for x in train for i in x.history)   # earlier ones

def test_leaks_finds_pairs(p5, p5_all):
    t, s, names = p5
    assert leaks(p5_all['test'], s.test, names)     # the checker is not vacuous

@pytest.mark.parametrize('which', ['ml', 'p5'])
def test_eval_history_before_target(which, ml, p5):
    t, s, _ = ml if which == 'ml' else p5
    tst, val = dict(zip(s.test.user_id, s.test.item_id)), dict(zip(s.valid.user_id, s.valid.item_id))
    users = list(tst)[:50]
    test = quiet(t, s, split_name='test', users=users)
    valid = quiet(t, s, split_name='valid', users=users)
    assert all(x.item_id == tst[x.user_id] and x.history[-1] == val[x.user_id] and tst[x.user_id] not in x.history for x in test)
    assert all(x.item_id == val[x.user_id] and tst[x.user_id] not in _mentioned(x) for x in valid)
    assert all(set(x.history) <= set(s.train.item_id[s.train.user_id == x.user_id]) for x in valid)

# ---------------------------------------------------------------- direct candidates
def _swap_positive(s, users):
    "The split with each of `users`' test item exchanged with the first of its saved negatives."
    users = set(users)
    first = {u: n[0] for u, n in zip(s.negatives['user_id'], s.negatives['items'])}
    pos = dict(zip(s.test['user_id'], s.test['item_id']))
    test = s.test.copy(); m = test['user_id'].isin(users)
    test.loc[m, 'item_id'] = test.loc[m, 'user_id'].map(first)
    neg = s.negatives.assign(items=[[pos[u], *n[1:]] if u in users else list(n)
                                    for u, n in zip(s.negatives['user_id'], s.negatives['items'])])
    return dataclasses.replace(s, test=test, negatives=neg)

def _named(x, c, names, end):
    "Item `c`'s title is in `x`'s text before `end`, other than inside another item's title."
    other = [(e.start, e.end) for e in x.sample.entities if e.kind == 'item' and e.key != c]
    return any(not any(a <= m.start() and m.end() <= b for a, b in other)
               for m in re.finditer(re.escape(names[c]), x.sample.text[:end]))

@pytest.mark.parametrize('which', ['ml', 'p5'])
def test_direct_prompts_do_not_depend_on_the_positive(which, ml, p5):
    """Direct test prompts are the same text up to the answer whichever of the 100 candidates is the positive (the
    positive swapped with a negative), name no candidate outside the history (choose), and yes/no prompts differ only in
    the item asked about; the 100 candidates are the positive + the saved negatives, in the same order either way."""
    t, s, names = ml if which == 'ml' else p5
    users = list(s.test['user_id'])[:25]
    s2 = _swap_positive(s, users)
    xs, ys = (build_tasks(t, sp, ['direct'], split_name='test', users=users) for sp in (s, s2))
    neg = dict(zip(s.negatives['user_id'], s.negatives['items']))
    assert len(xs) == len(ys) == len(users) * len(templates('direct'))
    for x, y in zip(xs, ys):
        assert (x.user_id, x.template_id) == (y.user_id, y.template_id) and x.item_id != y.item_id
        assert len(x.candidates) == 100 and set(x.candidates) == {x.item_id, *neg[x.user_id]}
        assert x.candidates == y.candidates                               # the order does not follow the positive
        if TEMPLATES[x.template_id].choose:
            assert x.answer_text == names[x.item_id] and y.answer_text == names[y.item_id]
            assert x.sample.text[:x.answer[0]] == y.sample.text[:y.answer[0]]
            shown = {e.key for e in x.sample.entities if e.kind == 'item' and e.end <= x.answer[0]}
            assert shown == set(x.history)                                # the history, and no candidate
            assert not any(_named(x, c, names, x.answer[0]) for c in set(x.candidates) - set(x.history))
        else:
            assert x.values['item'][2] == y.values['item'][2] == x.candidates[0]   # asked about the same first candidate
            assert x.sample.text[:x.answer[0]] == y.sample.text[:y.answer[0]]
            for c in [x.item_id, y.item_id, *x.candidates[:8]]:
                a, b = for_candidate(x, c, names), for_candidate(y, c, names)
                assert a.sample.text[:a.answer[0]] == b.sample.text[:b.answer[0]]
                assert a.answer_text == ('yes' if c == x.item_id else 'no') and b.answer_text == ('yes' if c == y.item_id else 'no')
                assert a.sample.text[slice(*a.answer)] == a.answer_text and a.values['item'][2] == c
                assert not any(_named(a, o, names, a.answer[0]) for o in set(x.candidates) - set(x.history) - {c})
    assert 0 < sum(x.candidates[0] != x.item_id for x in xs)                # the positive is not always first
    assert all(x.candidates == z.candidates for x in xs for z in xs if x.user_id == z.user_id)   # one order per user

def test_no_candidate_slot():
    "The candidates slot is gone: a template cannot list candidates, so no prompt can hint at the positive that way."
    with pytest.raises(ValueError, match='unknown slot'): Template('direct', 'x', 'From {candidates}, pick {answer}')
    assert all('candidates' not in t.slots for t in TEMPLATES.values())
    assert [t.choose for t in templates('direct')] == ['item' not in t.slots for t in templates('direct')]

def test_direct_training_negatives_untouched(ml, ml_train):
    t, s, _ = ml
    touched = t.interactions.groupby('user_id')['item_id'].agg(set).to_dict()
    neg = dict(zip(s.negatives.user_id, map(set, s.negatives['items'])))
    d = [x for x in ml_train if x.family == 'direct']
    assert {x.answer_text for x in d if not TEMPLATES[x.template_id].choose} == {'yes', 'no'}
    for x in d:
        others = set(x.candidates) - {x.item_id}
        assert not others & touched[x.user_id] and not others & neg[x.user_id]

# ---------------------------------------------------------------- skipping
def test_ml100k_skips_explanation_and_review(ml):
    t, s, _ = ml
    with pytest.warns(TaskSkipped) as rec:
        xs = build_tasks(t, s, ['explanation', 'review', 'rating'], users=['1', '2'])
    msgs = sorted(str(w.message) for w in rec if issubclass(w.category, TaskSkipped))
    assert len(msgs) == 2
    assert "explanation tasks skipped" in msgs[0] and "'explanation' column" in msgs[0]
    assert "review tasks skipped" in msgs[1] and "'review' column" in msgs[1]
    assert {x.family for x in xs} == {'rating'}

def test_no_ratings_skips_rating(p5):
    t, _, _ = p5
    nr = Tables(t.users, t.items, t.interactions.assign(rating=np.nan), 'beauty-like')
    with pytest.warns(TaskSkipped, match="rating tasks skipped for beauty-like: the interactions column 'rating' is empty"):
        xs = build_tasks(nr, leave_one_out(nr))
    assert xs and 'rating' not in {x.family for x in xs}
    assert family_support(nr)['rating'] and not family_support(nr)['sequential']

def test_no_negatives_skips_direct_evaluation(p5):
    t, _, _ = p5
    s0 = leave_one_out(t, n_neg=0)
    with pytest.warns(TaskSkipped, match='direct tasks skipped.*no negatives'):
        xs = build_tasks(t, s0, split_name='test')
    assert xs and 'direct' not in {x.family for x in xs}
    assert 'direct' in {x.family for x in build_tasks(t, s0)}   # training needs no saved negatives

def test_fixture_feeds_all_five(p5, p5_all):
    assert family_support(p5[0], p5[1]) == {f: '' for f in FAMILIES}
    for k, xs in p5_all.items():
        assert {x.family for x in xs} == set(FAMILIES), k

def test_bad_arguments(p5):
    t, s, _ = p5
    with pytest.raises(ValueError, match='unknown task families'): build_tasks(t, s, ['ratings'])
    with pytest.raises(ValueError, match='split_name'): build_tasks(t, s, split_name='dev')

# ---------------------------------------------------------------- representation
def test_sample_fields(p5_all, ml_train):
    for x in [y for xs in p5_all.values() for y in xs] + ml_train[:3000]:
        check_sample(x.sample)
        a, b = x.answer
        assert x.sample.text[a:b] == x.answer_text and x.answer_text.strip() == x.answer_text != ''
        assert x.level == FAMILY_LEVEL[x.family]
        if x.level == 'document': assert b == len(x.sample.text)
        ent = [e for e in x.sample.entities if (e.start, e.end) == (a, b)]
        if x.family == 'rating': assert [(e.kind, e.key) for e in ent] == [('feature', 'rating')]
        elif x.family == 'sequential' or (x.family == 'direct' and x.answer_text not in ('yes', 'no')):
            assert [(e.kind, e.key) for e in ent] == [('item', x.item_id)]
        else: assert ent == []

def test_items_named_by_text(ml, ml_train):
    names = ml[2]
    for x in ml_train[:2000]:
        for e in x.sample.entities:
            if e.kind == 'item': assert x.sample.text[e.start:e.end] == names[e.key]

def test_to_masked_round_trip(tok, p5_all, ml_train):
    sids = special_ids(tok)
    xs = [y for v in p5_all.values() for y in v] + ml_train[:300]
    ms = to_masked_batch(xs, tok, sids)
    dec = lambda ids: tok.decode([int(i) for i in ids], clean_up_tokenization_spaces=False)
    for x, m in zip(xs, ms):
        want = sids.gmask if x.level == 'document' else sids.mask
        masks = np.isin(m.part_a, [sids.mask, sids.smask, sids.gmask])
        assert masks.sum() == 1 and m.part_a[m.mask_pos[0]] == want and len(m.spans) == 1
        assert dec(m.part_b_out[:-1]).strip() == x.answer_text and m.part_b_out[-1] == sids.eop
        assert m.part_b_in[0] == sids.sop and (m.part_b_in[1:] == m.part_b_out[:-1]).all()
        assert dec(reconstruct(m)) == x.sample.text
        if x.level == 'document': assert m.mask_pos[0] == len(m.part_a) - 1
        ans_ent = [k for k, e in enumerate(x.sample.entities) if (e.start, e.end) == x.answer]
        assert set(m.b_entity[1:].tolist()) == ({ans_ent[0]} if ans_ent else {-1})
    one = to_masked(xs[0], tok)
    assert (one.part_a == ms[0].part_a).all()

# ---------------------------------------------------------------- determinism
def test_deterministic(ml, ml_train):
    t, s, _ = ml
    key = lambda xs: [(x.family, x.template_id, x.user_id, x.item_id, x.sample.text, x.answer, x.candidates) for x in xs]
    users = ['1', '196', '500']
    again = quiet(t, s, users=users)
    assert key(again) == key([x for x in ml_train if x.user_id in users])
    assert key(quiet(t, s, users=users)) == key(again)
    assert key(quiet(t, s, users=users, seed=1)) != key(again)
    ev = lambda: key(quiet(t, s, split_name='test', users=users))
    assert ev() == ev()

def test_n_per_user(p5):
    t, s, _ = p5
    one = build_tasks(t, s, ['sequential'], n_per_user=1)
    allx = build_tasks(t, s, ['sequential'], n_per_user=None)
    per = pd.Series([x.user_id for x in one]).value_counts()
    assert (per == 1).all()
    n_train = s.train.groupby('user_id').size()
    assert len(allx) == int((n_train - 1).clip(lower=0).sum())   # every training interaction with an earlier one
