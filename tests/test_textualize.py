"""recsysllm_nb.textualize: period sampling proportions, budgets that never cut an entity, unique item names,
no held-out item in any training text, and the `datasets` round trip (atomic)."""
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from recsysllm_nb.data import Tables, Split, load_ml100k, leave_one_out
from recsysllm_nb.textualize import (Entity, TextSample, TextConfig, check_sample, item_names, sample_history,
                                     textualize_user, textualize_corpus, age_bucket)
from recsysllm_nb.periods import period_quotas, assign_periods
from recsysllm_nb.corpus import corpus_dataset, row_to_sample, sample_to_row

PROPS = (0.1, 0.3, 0.6)


@pytest.fixture(scope='module')
def ml():
    t = load_ml100k()
    return t, leave_one_out(t)


# ---------- period quotas and sampling ----------

@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60), st.integers(0, 60)), min_size=1, max_size=20),
       st.integers(1, 80))
def test_quotas_properties(counts, n):
    counts = np.array(counts)
    q = period_quotas(counts, n, PROPS)
    assert (q >= 0).all() and (q <= counts).all()
    np.testing.assert_array_equal(q.sum(1), np.minimum(counts.sum(1), n))
    ideal = n * np.array(PROPS)
    roomy = (counts >= np.ceil(ideal)).all(1)          # no period is short of its share: plain proportions
    assert (np.abs(q[roomy] - ideal) < 1).all()
    # a period that gives less than its share gives all it has
    short = q < np.floor(ideal)
    assert (q[short] == counts[short]).all()


@st.composite
def histories(draw):
    "Interactions of several users with random lengths and random (sorted, possibly tied) timestamps."
    n_users = draw(st.integers(1, 6))
    rows = []
    for u in range(n_users):
        n = draw(st.integers(1, 90))
        t0 = draw(st.integers(0, 10**9))
        gaps = draw(st.lists(st.integers(0, 10**7), min_size=n, max_size=n))
        ts = t0 + np.cumsum(gaps)
        rows += [(f'u{u}', f'i{k}', 3.0, int(t)) for k, t in enumerate(ts)]
    return pd.DataFrame(rows, columns=['user_id', 'item_id', 'rating', 'timestamp'])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.integers(1, 40), st.sampled_from(['rank', 'span', 'recency']), st.integers(0, 3))
def test_sampling_proportions(h, n, how, seed):
    sm = sample_history(h, n_items=n, periods=how, seed=seed)
    per_all = assign_periods(h.user_id.to_numpy(), h.timestamp.to_numpy(), how)
    for u, g in h.groupby('user_id', sort=False):
        counts = np.bincount(per_all[h.user_id.to_numpy() == u], minlength=3)
        got = sm[sm.user_id == u]
        # the counts per period are exactly the quotas
        np.testing.assert_array_equal(np.bincount(got.period, minlength=3), period_quotas(counts[None], n, PROPS)[0])
        assert len(got) == min(n, len(g))
        # chronological, and each row keeps the period it has in the full history
        assert (np.diff(got.timestamp.to_numpy()) >= 0).all()
        assert (got.index.to_numpy()[1:] > got.index.to_numpy()[:-1]).all()
    # deterministic under the seed
    pd.testing.assert_frame_equal(sm, sample_history(h, n_items=n, periods=how, seed=seed))


def test_rank_periods_are_thirds():
    p = assign_periods(np.array(['a'] * 9), np.arange(9))
    assert p.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_recency_windows():
    day = 86400
    ts = np.array([0, 100 * day, 150 * day, 159 * day, 160 * day])
    assert assign_periods(np.array(['a'] * 5), ts, 'recency', windows=(2 * day, 30 * day)).tolist() == [0, 0, 1, 2, 2]


def test_real_proportions(ml):
    t, s = ml
    sm = sample_history(s.train)
    sizes = s.train.groupby('user_id').size()
    per = sm.groupby(['user_id', 'period']).size().unstack(fill_value=0)
    big = per.loc[sizes[sizes >= 60].index]
    assert len(big) > 300 and (big.to_numpy() == [2, 6, 12]).all()
    share = per.sum() / per.sum().sum()
    assert abs(share[2] - 0.6) < 0.05 and abs(share[0] - 0.1) < 0.05


# ---------- budget: never cuts an entity ----------

title_chars = st.sampled_from(list("ab .;,'()[]:-?!") + ['Mr.', 'The', ' II', '...'])
titles = st.lists(title_chars, min_size=1, max_size=8).map(''.join).filter(lambda x: x.strip())


@st.composite
def tiny_tables(draw):
    n_items = draw(st.integers(1, 25))
    ts = draw(st.lists(titles, min_size=n_items, max_size=n_items))
    items = pd.DataFrame({'item_id': [str(i) for i in range(n_items)], 'title': ts,
                          'year': [draw(st.sampled_from(['', '1990', '1991'])) for _ in range(n_items)]})
    users = pd.DataFrame({'user_id': ['1', '2'], 'age': [draw(st.integers(5, 80)), 30], 'gender': ['F', 'M'],
                          'occupation': [draw(titles), 'writer'], 'zip_code': ['12345', '54321']})
    n = draw(st.integers(0, 40))
    inter = pd.DataFrame({'user_id': ['1'] * n, 'item_id': [str(draw(st.integers(0, n_items - 1))) for _ in range(n)],
                          'rating': 4.0, 'timestamp': np.sort(draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n))).astype('int64')})
    return Tables(users, items, inter, 'tiny')


def _check_entities(s, tables, names):
    check_sample(s)
    u = tables.users.set_index('user_id').loc[s.user_id]
    for e in s.entities:
        surf = s.text[e.start:e.end]
        if e.kind == 'item': assert surf == names[e.key]
        else:
            v = age_bucket(u['age']) if e.key == 'age' else {'F': 'female', 'M': 'male'}.get(u[e.key], str(u[e.key]).strip())
            assert surf == v


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiny_tables(), st.integers(0, 400), st.sampled_from([None, 5, 13]), st.booleans())
def test_budget_never_cuts_entity(tables, budget, n_items, by_tokens):
    names = item_names(tables.items)
    h = tables.interactions
    full = textualize_user(tables, h, '1', n_items=n_items)
    kw = (dict(max_tokens=budget // 4, count_tokens=lambda x: len(x.split())) if by_tokens else dict(max_chars=budget))
    try:
        s = textualize_user(tables, h, '1', n_items=n_items, **kw)
    except ValueError as e:
        assert 'features alone' in str(e)
        return
    _check_entities(s, tables, names)
    assert (len(s.text.split()) <= budget // 4) if by_tokens else (len(s.text) <= budget)
    k = len(s.items())
    assert s.items() == full.items()[len(full.items()) - k:]     # oldest dropped, whole
    if k == len(full.items()):
        assert s == full
    # features are all kept
    assert [e for e in s.entities if e.kind == 'feature'] == [e for e in full.entities if e.kind == 'feature']


def test_budget_keeps_as_many_as_fit(ml):
    t, s = ml
    full = textualize_user(t, s, '13', n_items=None)
    for budget in (200, 500, 1500):
        cut = textualize_user(t, s, '13', n_items=None, max_chars=budget)
        k = len(cut.items())
        assert len(cut.text) <= budget
        more = textualize_user(t, s, '13', n_items=None, max_chars=len(cut.text) + 1000)
        assert len(more.items()) > k        # a larger budget keeps more items
        assert cut.items() == full.items()[-k:]


def test_check_sample_catches_cut():
    s = TextSample('A b. C', [Entity(2, 6, 'item', '1')], [(0, 4), (5, 6)])
    with pytest.raises(ValueError, match='inside entity'): check_sample(s)


# ---------- item names ----------

@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(['A', 'A (1990)', 'A (1990) [1]', 'B', 'A [2]']), st.sampled_from(['', '1990', '1991'])),
                min_size=1, max_size=12))
def test_item_names_unique(rows):
    items = pd.DataFrame({'item_id': [str(i) for i in range(len(rows))], 'title': [r[0] for r in rows], 'year': [r[1] for r in rows]})
    names = item_names(items)
    assert len(set(names.values())) == len(items)
    for (title, _), n in zip(rows, names.values()): assert n.startswith(title)
    counts = pd.Series([r[0] for r in rows]).value_counts()
    for (title, _), n in zip(rows, names.values()):
        if counts[title] == 1 and title not in {'A (1990)', 'A (1990) [1]', 'A [2]'}: assert n == title


def test_item_names_ml100k(ml):
    t, _ = ml
    names = item_names(t.items)
    assert len(set(names.values())) == len(t.items) == 1682
    assert names['486'] == 'Sabrina (1954)' and names['274'] == 'Sabrina (1995)'
    assert names['878'] == 'That Darn Cat! (1997) [878]' and names['1444'] == 'That Darn Cat! (1965)'
    assert names['50'] == 'Star Wars'
    changed = [i for i, n in names.items() if n != t.items.set_index('item_id').at[i, 'title']]
    assert len(changed) == 45


# ---------- no leak, consistency ----------

def test_no_heldout_item_in_training_text(ml):
    t, s = ml
    corpus = textualize_corpus(t, s, n_items=None)
    train = set(zip(s.train.user_id, s.train.item_id))
    held = set(zip(s.valid.user_id, s.valid.item_id)) | set(zip(s.test.user_id, s.test.item_id))
    seen = {(c.user_id, i) for c in corpus for i in c.items()}
    assert seen == train and not (seen & held)
    names = item_names(t.items)
    for c in corpus:
        heldout_names = {names[i] for (u, i) in held if u == c.user_id} - {names[i] for i in c.items()}
        # every entity span is an item of the training part; the text names no held-out item as an entity
        assert not {c.text[e.start:e.end] for e in c.entities if e.kind == 'item'} & heldout_names


def test_user_equals_corpus_and_checks(ml):
    t, s = ml
    corpus = textualize_corpus(t, s)
    names = item_names(t.items)
    for c in corpus[::50]:
        assert textualize_user(t, s, c.user_id) == c
        assert textualize_user(t, s.train, c.user_id, names=names) == c
    for c in corpus: _check_entities(c, t, names)


def test_unknown_option_and_user(ml):
    t, s = ml
    with pytest.raises(TypeError, match='unknown textualize option'): textualize_user(t, s, '1', n_itemz=3)
    with pytest.raises(ValueError, match='not in the users table'): textualize_user(t, s, 'nobody')
    with pytest.raises(ValueError, match='count_tokens'): textualize_user(t, s, '1', max_tokens=10)


# ---------- datasets round trip ----------

def _small(ml, n=60):
    t, s = ml
    keep = t.users.user_id.iloc[:n]
    tt = Tables(t.users[t.users.user_id.isin(keep)].reset_index(drop=True), t.items, t.interactions[t.interactions.user_id.isin(keep)], 'small')
    return tt, leave_one_out(tt)


def test_corpus_dataset_roundtrip(ml, tmp_path):
    tt, ss = _small(ml)
    corpus = textualize_corpus(tt, ss, n_items=8)
    ds = corpus_dataset(tt, ss, tmp_path / 'c', num_proc=2, n_items=8, shard_users=25)
    assert len(ds) == len(corpus)
    assert [row_to_sample(r) for r in ds] == corpus
    assert row_to_sample(sample_to_row(corpus[0])) == corpus[0]
    with pytest.raises(FileExistsError): corpus_dataset(tt, ss, tmp_path / 'c', num_proc=2)
    ds2 = corpus_dataset(tt, ss, tmp_path / 'c', num_proc=2, overwrite=True, n_items=3)
    assert [row_to_sample(r) for r in ds2] == textualize_corpus(tt, ss, n_items=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['c']


def _boom(v):
    if v == 'writer': raise RuntimeError('boom')
    return v


def test_corpus_dataset_atomic_on_failure(ml, tmp_path):
    tt, ss = _small(ml, 120)
    assert (tt.users.occupation == 'writer').any()
    with pytest.raises(Exception): corpus_dataset(tt, ss, tmp_path / 'c', num_proc=2, formatters={'occupation': _boom})
    assert list(tmp_path.iterdir()) == []          # nothing half-written, no temporary folder left


def test_featureless_users_and_yearless_items():
    "Amazon-like tables: users with no feature column, items with no year; titles shared -> the id tells them apart."
    users = pd.DataFrame({'user_id': ['a', 'b']})
    items = pd.DataFrame({'item_id': ['x', 'y', 'z'], 'title': ['Soap', 'Soap', 'Brush']})
    inter = pd.DataFrame({'user_id': ['a', 'a', 'a', 'b'], 'item_id': ['x', 'y', 'z', 'z'], 'rating': 5.0,
                          'timestamp': np.array([1, 2, 3, 4], dtype='int64')})
    t = Tables(users, items, inter, 'tiny')
    s = textualize_user(t, inter, 'a')
    check_sample(s)
    assert [s.surface(i) for i in range(3)] == ['Soap [x]', 'Soap [y]', 'Brush'] and s.items() == ['x', 'y', 'z']
    assert textualize_user(t, inter[inter.user_id == 'a'], 'b').text == ''   # no features, no history: empty text
