"""recsysllm_nb.data and recsysllm_nb.sources: loaders, validation errors (file, row, column), the leave-one-out split, P5 fixture, CLI."""
import gzip, json, os, pickle, shutil, subprocess, sys, time
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
from recsysllm_nb.data import DataError, Tables, Split, load_ml100k, ml100k_dir, leave_one_out, sample_negatives
from recsysllm_nb.dataset_stats import kcore, stats, format_stats
from recsysllm_nb.sources import load_tables, load_p5, load_p5_negatives, make_p5_fixture, recsysllm_data

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / 'data_samples' / 'p5_fixture'
STATS_KEYS = ['users', 'items', 'interactions', 'sparsity', 'train', 'valid', 'test']

@pytest.fixture(scope='module')
def ml(): return load_ml100k()

@pytest.fixture(scope='module')
def split(ml): return leave_one_out(ml, n_neg=99, seed=0)

# ---------- MovieLens-100K ----------
def test_ml100k_counts_and_types(ml):
    assert (len(ml.users), len(ml.items), len(ml.interactions)) == (943, 1682, 100_000)
    assert ml.users.user_id.is_unique and ml.items.item_id.is_unique
    assert ml.interactions.rating.dtype == np.float64 and ml.interactions.timestamp.dtype == np.int64
    assert ml.users.age.dtype == np.int64
    assert set(ml.users.columns) == {'user_id', 'age', 'gender', 'occupation', 'zip_code'}
    assert set(ml.items.columns) == {'item_id', 'title', 'year', 'genres'}
    assert ml.interactions.user_id.map(type).eq(str).all()

def test_ml100k_sorted_by_user_then_time_stable(ml):
    x = ml.interactions
    assert x.user_id.is_monotonic_increasing
    same = x.user_id.to_numpy()[1:] == x.user_id.to_numpy()[:-1]
    assert (np.diff(x.timestamp.to_numpy())[same] >= 0).all()
    # ties keep file order: compare with a stable sort of the raw file
    raw = pd.read_csv(ml100k_dir() / 'ml-100k.inter', sep='\t', dtype=str)
    raw.columns = ['user_id', 'item_id', 'rating', 'timestamp']
    raw['timestamp'] = raw.timestamp.astype(float).astype('int64')
    exp = raw.sort_values(['user_id', 'timestamp'], kind='stable')
    assert exp.item_id.tolist() == x.item_id.tolist()

def test_ml100k_load_and_split_fast(ml):
    load_ml100k(); leave_one_out(ml)   # warm up
    t = time.perf_counter(); t_ml = load_ml100k(); leave_one_out(t_ml, seed=0)
    assert time.perf_counter() - t < 1.5   # target well under 1 s; margin for a busy 2-core machine

def _ml_copy(tmp_path):
    d = tmp_path / 'ml'; d.mkdir(parents=True)
    for e in ('user', 'item', 'inter'): shutil.copy(ml100k_dir() / f'ml-100k.{e}', d / f'ml-100k.{e}')
    return d

def _replace_line(f, lineno, new):
    lines = f.read_text().splitlines(keepends=True); lines[lineno - 1] = new; f.write_text(''.join(lines))

def test_ml100k_bad_rating_names_line(tmp_path):
    d = _ml_copy(tmp_path)
    _replace_line(d / 'ml-100k.inter', 7, '196\t242\tgood\t881250949\n')
    with pytest.raises(DataError) as e: load_ml100k(d)
    assert (Path(e.value.file).name, e.value.row, e.value.column) == ('ml-100k.inter', 7, 'rating')
    assert 'ml-100k.inter, line 7, column \'rating\'' in str(e.value)

def test_ml100k_unknown_user_and_empty_title(tmp_path):
    d = _ml_copy(tmp_path)
    _replace_line(d / 'ml-100k.inter', 3, '9999\t242\t3\t881250949\n')
    with pytest.raises(DataError) as e: load_ml100k(d)
    assert (Path(e.value.file).name, e.value.row, e.value.column) == ('ml-100k.inter', 3, 'user_id')
    d = _ml_copy(tmp_path / 'b')
    _replace_line(d / 'ml-100k.item', 5, '4\t \t1995\tComedy\n')
    with pytest.raises(DataError) as e: load_ml100k(d)
    assert (Path(e.value.file).name, e.value.row, e.value.column) == ('ml-100k.item', 5, 'movie_title')

# ---------- load_tables: one test per bad input ----------
ITEMS = 'item_id,title,genre\nm1,Alpha,drama\nm2,Beta,comedy\nm3,Gamma,drama\n'
USERS = 'user_id,age\nu1,20\nu2,30\n'
INTER = 'user_id,item_id,rating,timestamp\nu1,m1,4,100\nu1,m2,5,200\nu2,m3,3,150\n'

def _write(tmp_path, items=ITEMS, inter=INTER, users=USERS):
    for n, s in (('items.csv', items), ('inter.csv', inter), ('users.csv', users)): (tmp_path / n).write_text(s)
    return tmp_path / 'items.csv', tmp_path / 'inter.csv', tmp_path / 'users.csv'

def _err(tmp_path, **kw):
    i, x, u = _write(tmp_path, **kw)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(DataError) as e: load_tables(i, x, u)
    assert sorted(p.name for p in tmp_path.iterdir()) == before      # nothing written when loading fails
    return e.value

def test_good_tables(tmp_path):
    t = load_tables(*_write(tmp_path))
    assert (len(t.users), len(t.items), len(t.interactions)) == (2, 3, 3)
    assert t.items.columns.tolist() == ['item_id', 'title', 'genre'] and t.users.columns.tolist() == ['user_id', 'age']
    assert t.interactions.timestamp.dtype == np.int64 and t.interactions.rating.dtype == np.float64

def test_missing_column(tmp_path):
    e = _err(tmp_path, inter='user_id,item_id,rating\nu1,m1,4\n')
    assert (Path(e.file).name, e.row, e.column) == ('inter.csv', 1, 'timestamp')
    assert 'inter.csv' in str(e) and "'timestamp'" in str(e) and 'line 1' in str(e)

def test_missing_column_named_by_mapping(tmp_path):
    i, x, u = _write(tmp_path)
    with pytest.raises(DataError) as e: load_tables(i, x, u, columns={'title': 'name'})
    assert (Path(e.value.file).name, e.value.row, e.value.column) == ('items.csv', 1, 'name')

def test_duplicate_item_id(tmp_path):
    e = _err(tmp_path, items=ITEMS + 'm2,Beta again,drama\n')
    assert (Path(e.file).name, e.row, e.column) == ('items.csv', 5, 'item_id') and e.got == 'm2'

def test_duplicate_user_id(tmp_path):
    e = _err(tmp_path, users=USERS + 'u1,40\n')
    assert (Path(e.file).name, e.row, e.column) == ('users.csv', 4, 'user_id')

def test_unknown_user(tmp_path):
    e = _err(tmp_path, inter=INTER + 'u9,m1,4,300\n')
    assert (Path(e.file).name, e.row, e.column) == ('inter.csv', 5, 'user_id') and e.got == 'u9'

def test_unknown_item(tmp_path):
    e = _err(tmp_path, inter='user_id,item_id,rating,timestamp\nu1,m7,4,100\n')
    assert (Path(e.file).name, e.row, e.column) == ('inter.csv', 2, 'item_id')

def test_unparsable_rating(tmp_path):
    e = _err(tmp_path, inter=INTER.replace('u1,m2,5,200', 'u1,m2,five,200'))
    assert (Path(e.file).name, e.row, e.column, e.got) == ('inter.csv', 3, 'rating', 'five')
    assert "inter.csv, line 3, column 'rating': expected a number, got 'five'" in str(e)

def test_empty_rating_is_an_error(tmp_path):
    e = _err(tmp_path, inter=INTER.replace('u2,m3,3,150', 'u2,m3,,150'))
    assert (e.row, e.column) == (4, 'rating')

def test_unparsable_timestamp(tmp_path):
    e = _err(tmp_path, inter=INTER.replace('u2,m3,3,150', 'u2,m3,3,yesterday'))
    assert (Path(e.file).name, e.row, e.column) == ('inter.csv', 4, 'timestamp')

def test_iso_timestamps_parse(tmp_path):
    i, x, u = _write(tmp_path, inter='user_id,item_id,rating,timestamp\nu1,m1,4,2020-01-01\nu1,m2,5,2020-01-01T00:00:10Z\n')
    t = load_tables(i, x, u)
    assert t.interactions.timestamp.tolist() == [1577836800, 1577836810]

def test_empty_title(tmp_path):
    e = _err(tmp_path, items=ITEMS.replace('m2,Beta,', 'm2,  ,'))
    assert (Path(e.file).name, e.row, e.column) == ('items.csv', 3, 'title')

def test_line_numbers_with_multiline_quoted_fields(tmp_path):
    inter = 'user_id,item_id,rating,timestamp,review\nu1,m1,4,100,"great\nfilm\nreally"\nu1,m2,bad,200,ok\n'
    e = _err(tmp_path, inter=inter)
    assert (e.row, e.column) == (5, 'rating')   # the record starts on line 5 of the file

def test_parquet_and_frames_report_rows(tmp_path):
    x = pd.DataFrame({'user_id': ['u1', 'u2'], 'item_id': ['m1', 'zz'], 'rating': [1.0, 2.0], 'timestamp': [1, 2]})
    x.to_parquet(tmp_path / 'x.parquet')
    items = pd.read_csv(_write(tmp_path)[0], dtype=str)
    with pytest.raises(DataError) as e: load_tables(items, tmp_path / 'x.parquet')
    assert (Path(e.value.file).name, e.value.row, e.value.column, e.value.unit) == ('x.parquet', 2, 'item_id', 'row')
    assert 'row 2' in str(e.value)

def test_users_default_from_interactions_and_implicit_ratings(tmp_path):
    i, _, _ = _write(tmp_path)
    x = pd.DataFrame({'uid': ['b', 'a', 'b'], 'item_id': ['m1', 'm2', 'm3'], 'timestamp': [3, 1, 2]})
    t = load_tables(i, x, columns={'user_id': 'uid'})
    assert t.users.user_id.tolist() == ['b', 'a'] and t.interactions.rating.isna().all()
    assert t.interactions[['user_id', 'item_id']].values.tolist() == [['a', 'm2'], ['b', 'm3'], ['b', 'm1']]

def test_missing_file(tmp_path):
    with pytest.raises(DataError) as e: load_tables(tmp_path / 'nope.csv', tmp_path / 'inter.csv')
    assert Path(e.value.file).name == 'nope.csv'

# ---------- the split ----------
def test_split_properties(ml, split):
    assert (len(split.train), len(split.valid), len(split.test)) == (100_000 - 2 * 943, 943, 943)
    assert sorted(split.test.user_id) == sorted(ml.users.user_id) and split.test.user_id.is_unique
    assert split.valid.user_id.is_unique
    pairs = lambda d: set(zip(d.user_id, d.item_id))
    assert not pairs(split.test) & (pairs(split.train) | pairs(split.valid))
    last = ml.interactions.groupby('user_id').timestamp.max()
    assert (split.test.timestamp.to_numpy() == last[split.test.user_id].to_numpy()).all()
    tr_last = split.train.groupby('user_id').timestamp.max()
    v = split.valid.set_index('user_id').timestamp
    assert (tr_last[v.index] <= v).all()
    assert list(split.train.columns) == list(ml.interactions.columns)

def test_negatives(ml, split):
    seen = ml.interactions.groupby('user_id').item_id.agg(set)
    items = set(ml.items.item_id)
    assert split.negatives.user_id.tolist() == split.test.user_id.tolist()
    for u, negs in zip(split.negatives.user_id, split.negatives['items']):
        assert len(negs) == 99 and len(set(negs)) == 99
        assert not set(negs) & seen[u] and set(negs) <= items

def test_split_deterministic(ml, split):
    again = leave_one_out(ml, n_neg=99, seed=0)
    for k in ('train', 'valid', 'test', 'negatives'): pd.testing.assert_frame_equal(getattr(again, k), getattr(split, k))
    assert leave_one_out(ml, seed=7).negatives['items'].tolist() != split.negatives['items'].tolist()

def test_short_users_stay_in_train_and_ties_are_stable():
    items = pd.DataFrame({'item_id': [f'i{k}' for k in range(10)], 'title': [f'T{k}' for k in range(10)]})
    x = pd.DataFrame({'user_id': ['a', 'a', 'b', 'b', 'b', 'b'], 'item_id': ['i0', 'i1', 'i2', 'i3', 'i4', 'i5'],
                      'rating': 1.0, 'timestamp': [1, 2, 5, 5, 5, 5]})
    t = load_tables(items, x)
    sp = leave_one_out(t, n_neg=3, seed=0)
    assert sp.test.user_id.tolist() == ['b'] and sp.test.item_id.tolist() == ['i5'] and sp.valid.item_id.tolist() == ['i4']
    assert sorted(sp.train.item_id) == ['i0', 'i1', 'i2', 'i3']
    assert len(sp.negatives) == 1 and not set(sp.negatives['items'][0]) & {'i2', 'i3', 'i4', 'i5'}

def test_sample_negatives_too_few_free_items():
    with pytest.raises(ValueError): sample_negatives(np.array([0, 0]), np.array([0, 1]), 1, 3, n_neg=2)
    assert sample_negatives(np.array([0]), np.array([0]), 2, 5, n_neg=0).shape == (2, 0)

def _check_negatives(neg, u, i, n_users, n_neg):
    "Shape, distinct per user, and no negative is an item the user touched."
    assert neg.shape == (n_users, n_neg)
    assert (np.diff(np.sort(neg, 1), axis=1) > 0).all()
    touched = set(zip(u.tolist(), i.tolist()))
    assert not any((k, j) in touched for k in range(n_users) for j in neg[k].tolist())

def test_sample_negatives_sparse_and_dense_users():
    """Users who touched a few items (rejection sampling) beside users who touched most of the catalogue (the keyed
    fallback): distinct, never touched, the same under the seed, another seed gives others."""
    rng = np.random.default_rng(0)
    n_users, n_items, n_neg = 300, 400, 99
    k = np.where(np.arange(n_users) % 10 == 0, rng.integers(201, 301, n_users), rng.integers(1, 40, n_users))
    u = np.repeat(np.arange(n_users), k)
    i = np.concatenate([rng.choice(n_items, n, replace=False) for n in k])
    neg = sample_negatives(u, i, n_users, n_items, n_neg, seed=5)
    _check_negatives(neg, u, i, n_users, n_neg)
    assert (sample_negatives(u, i, n_users, n_items, n_neg, seed=5) == neg).all()
    assert (sample_negatives(u, i, n_users, n_items, n_neg, seed=6) != neg).any()
    # a user who touched all but exactly n_neg items gets exactly those
    u2, i2 = np.zeros(n_items - n_neg, int), np.arange(n_neg, n_items)
    assert sorted(sample_negatives(u2, i2, 1, n_items, n_neg)[0].tolist()) == list(range(n_neg))

def test_sample_negatives_retry_and_small_blocks():
    "Users near the half-catalogue threshold (their first draws often fall short) and tiny blocks give valid negatives."
    rng = np.random.default_rng(1)
    n_users, n_items = 200, 500
    u = np.repeat(np.arange(n_users), 240)
    i = np.concatenate([rng.choice(n_items, 240, replace=False) for _ in range(n_users)])
    for block in (1 << 22, 300):
        neg = sample_negatives(u, i, n_users, n_items, 99, seed=0, block=block)
        _check_negatives(neg, u, i, n_users, 99)

def test_sample_negatives_cost_does_not_grow_with_items():
    "A million-item catalogue: done in about the time of a small one (the old draw was users x items)."
    rng = np.random.default_rng(2)
    u = np.repeat(np.arange(5000), 10)
    t = time.perf_counter(); sample_negatives(u, rng.integers(0, 2000, len(u)), 5000, 2000); small = time.perf_counter() - t
    i = rng.integers(0, 1_000_000, len(u))
    t = time.perf_counter(); neg = sample_negatives(u, i, 5000, 1_000_000); big = time.perf_counter() - t
    assert big < 5 * small + 0.5
    assert not np.isin(neg + np.arange(5000)[:, None] * 1_000_000, u.astype(np.int64) * 1_000_000 + i).any()

def test_split_save_load_roundtrip(tmp_path, split):
    out = split.save(tmp_path / 'sp')
    meta = json.loads((out / 'split.json').read_text())
    assert meta['seed'] == 0 and meta['n_neg'] == 99 and meta['test'] == 943
    back = Split.load(out)
    for k in ('train', 'valid', 'test', 'negatives'): pd.testing.assert_frame_equal(getattr(back, k), getattr(split, k))
    split.save(out)   # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ['sp']

def test_split_save_is_atomic(tmp_path, split):
    bad = Split(split.train, split.valid, split.test.assign(bad=[object()] * len(split.test)), split.negatives, 0)
    with pytest.raises(Exception): bad.save(tmp_path / 'sp')
    assert list(tmp_path.iterdir()) == []                     # nothing written, no temporary folder left
    split.save(tmp_path / 'sp')
    with pytest.raises(Exception): bad.save(tmp_path / 'sp')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['sp']
    pd.testing.assert_frame_equal(Split.load(tmp_path / 'sp').test, split.test)   # the old split is intact

# ---------- k-core and statistics ----------
def test_kcore(ml):
    k = kcore(ml, 10)
    assert (k.interactions.user_id.value_counts() >= 10).all() and (k.interactions.item_id.value_counts() >= 10).all()
    assert set(k.items.item_id) == set(k.interactions.item_id) and len(kcore(k, 10).interactions) == len(k.interactions)

def test_stats(ml, split):
    s = stats(ml, split)
    assert list(s) == STATS_KEYS
    assert s == dict(users=943, items=1682, interactions=100_000, sparsity=0.936953, train=98_114, valid=943, test=943)
    assert 'sparsity' in format_stats(s, 'ml-100k')

# ---------- P5 ----------
def test_p5_fixture_matches_generator(tmp_path):
    fresh = make_p5_fixture(tmp_path / 'fx')
    names = sorted(p.name for p in fresh.iterdir())
    assert names == sorted(['sequential_data.txt', 'datamaps.json', 'meta.json.gz', 'review_splits.pkl', 'exp_splits.pkl', 'negative_samples.txt'])
    for n in names: assert (FIXTURE / n).read_bytes() == (fresh / n).read_bytes(), n

def test_p5_fixture_structure():
    splits = pickle.loads((FIXTURE / 'review_splits.pkl').read_bytes())
    assert set(splits) == {'train', 'val', 'test'}
    r = splits['train'][0]
    assert {'reviewerID', 'asin', 'reviewText', 'overall', 'summary', 'unixReviewTime'} <= set(r)
    assert any('explanation' in r and 'feature' in r for s in splits.values() for r in s)
    dm = json.loads((FIXTURE / 'datamaps.json').read_text())
    assert {'user2id', 'item2id', 'id2user', 'id2item'} <= set(dm)
    import ast
    meta = [ast.literal_eval(l) for l in gzip.open(FIXTURE / 'meta.json.gz', 'rt')]
    assert {'asin', 'title', 'brand', 'price', 'categories'} <= set(meta[0])
    negs = (FIXTURE / 'negative_samples.txt').read_text().splitlines()
    assert all(len(l.split()) == 100 for l in negs)

def test_load_p5_fixture():
    t = load_p5(FIXTURE)
    dm = json.loads((FIXTURE / 'datamaps.json').read_text())
    assert t.name == 'p5_fixture' and len(t.users) == len(dm['user2id']) and len(t.items) == len(dm['item2id'])
    assert set(t.users.user_id) == set(dm['user2id']) and set(t.items.item_id) == set(dm['item2id'])
    seq = [l.split() for l in (FIXTURE / 'sequential_data.txt').read_text().splitlines()]
    assert len(t.interactions) == sum(len(s) - 1 for s in seq)
    for s in seq:   # the order of the sequence survives, with P5's ids mapped back to asins
        got = t.interactions[t.interactions.user_id == dm['id2user'][s[0]]].item_id.tolist()
        assert got == [dm['id2item'][i] for i in s[1:]]
    x = t.interactions
    assert {'review', 'summary', 'explanation', 'feature'} <= set(x.columns)
    assert x.rating.between(1, 5).all() and (x.review != '').all() and (x.summary != '').all()
    assert (x.explanation != '').any() and ((x.explanation != '') == (x.feature != '')).all()
    assert (t.items.title.str.len() > 0).all() and not t.items.item_id.str.fullmatch(r'\d+').any()
    sp = leave_one_out(t, seed=0)
    assert len(sp.test) == len(t.users) and sp.negatives['items'].map(len).eq(99).all()

def test_load_p5_negatives():
    n = load_p5_negatives(FIXTURE)
    t = load_p5(FIXTURE)
    seen = t.interactions.groupby('user_id').item_id.agg(set)
    assert all(len(v) == 99 and not set(v) & seen[u] for u, v in zip(n.user_id, n['items']))

def _p5_copy(tmp_path):
    d = tmp_path / 'p5'; shutil.copytree(FIXTURE, d); return d

def test_p5_unknown_item_in_sequence(tmp_path):
    d = _p5_copy(tmp_path)
    lines = (d / 'sequential_data.txt').read_text().splitlines()
    lines[1] = lines[1] + ' 99999'
    (d / 'sequential_data.txt').write_text('\n'.join(lines) + '\n')
    with pytest.raises(DataError) as e: load_p5(d)
    assert Path(e.value.file).name == 'sequential_data.txt' and e.value.row == 2 and 'item' in e.value.column
    assert e.value.got == '99999'

def test_p5_empty_title(tmp_path):
    d = _p5_copy(tmp_path)
    import ast
    lines = gzip.open(d / 'meta.json.gz', 'rt').read().splitlines()
    m = ast.literal_eval(lines[2]); m['title'] = ''
    lines[2] = repr(m)
    with gzip.open(d / 'meta.json.gz', 'wt') as f: f.write('\n'.join(lines) + '\n')
    with pytest.raises(DataError) as e: load_p5(d)
    assert (Path(e.value.file).name, e.value.row, e.value.column) == ('meta.json.gz', 3, 'title')
    t = load_p5(d, missing_title='asin')
    assert (t.items.title == m['asin']).sum() == 1

def test_p5_bad_rating_in_reviews(tmp_path):
    d = _p5_copy(tmp_path)
    s = pickle.loads((d / 'review_splits.pkl').read_bytes())
    s['val'][0]['overall'] = 'five stars'
    (d / 'review_splits.pkl').write_bytes(pickle.dumps(s))
    with pytest.raises(DataError) as e: load_p5(d)
    assert (Path(e.value.file).name, e.value.row, e.value.column) == ('review_splits.pkl', 'val[0]', 'overall')

def test_p5_missing_file(tmp_path):
    d = _p5_copy(tmp_path); (d / 'datamaps.json').unlink()
    with pytest.raises(DataError) as e: load_p5(d)
    assert Path(e.value.file).name == 'datamaps.json'

def test_p5_without_reviews_keeps_sequence_order(tmp_path):
    d = _p5_copy(tmp_path)
    for f in ('review_splits.pkl', 'exp_splits.pkl'): (d / f).unlink()
    t = load_p5(d); full = load_p5(FIXTURE)
    assert t.interactions.rating.isna().all()
    a = t.interactions.groupby('user_id', sort=True).item_id.agg(list)
    b = full.interactions.groupby('user_id', sort=True).item_id.agg(list)
    assert a.to_dict() == b.to_dict()

# ---------- command line ----------
def _cli(*args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    return subprocess.run([sys.executable, '-m', 'recsysllm_nb.sources', *args], capture_output=True, text=True, cwd=cwd, env=env)

def test_cli_last_line_json(tmp_path):
    res = _cli('--dataset', 'ml-100k', '--seed', '0', '--out', str(tmp_path / 'split'))
    assert res.returncode == 0, res.stderr
    last = json.loads(res.stdout.strip().splitlines()[-1])
    assert list(last) == STATS_KEYS
    assert last == dict(users=943, items=1682, interactions=100_000, sparsity=0.936953, train=98_114, valid=943, test=943)
    sp = Split.load(tmp_path / 'split')
    assert len(sp.test) == 943 and sp.seed == 0

def test_cli_p5(tmp_path):
    res = _cli('--dataset', f'p5:{FIXTURE}')
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1])['interactions'] == len(load_p5(FIXTURE).interactions)

def test_cli_function_in_process(capsys):
    recsysllm_data(dataset=f'p5:{FIXTURE}', seed=1)
    out = capsys.readouterr().out.strip().splitlines()
    assert list(json.loads(out[-1])) == STATS_KEYS

def test_cli_failure_writes_nothing(tmp_path):
    d = tmp_path / 'tables'; d.mkdir(); _write(d, inter=INTER.replace('u1,m2,5,200', 'u1,m2,five,200'))
    (d / 'inter.csv').rename(d / 'interactions.csv')
    res = _cli('--dataset', f'tables:{d}', '--out', str(tmp_path / 'split'))
    assert res.returncode != 0 and 'interactions.csv, line 3, column \'rating\'' in res.stderr
    assert not (tmp_path / 'split').exists() and sorted(p.name for p in tmp_path.iterdir()) == ['tables']
