"""recsysllm_nb.sequences: the user-sequence + item-map loader (fixture, every bad input with file/line/field, HTML decoding,
the title cap, colliding titles, the timeline from the gaps), `recsysllm_data --dataset seq:`, and the real Amazon Beauty
folder when it is there."""
import json, os, subprocess, sys, time
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
from recsysllm_nb.data import DataError, Tables, leave_one_out
from recsysllm_nb.dataset_stats import stats
from recsysllm_nb.sequences import load_sequences, clean_title, make_seq_fixture
from recsysllm_nb.sources import load_dataset
from recsysllm_nb.textualize import item_names, textualize_corpus, check_sample

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / 'data_samples' / 'seq_fixture'
BEAUTY = Path(os.environ.get('RECSYSLLM_BEAUTY', ROOT.parent / 'shared' / 'data' / 'amazon-beauty'))
SEQ = (FIXTURE / 'sequences.jsonl').read_text().splitlines(True)
ITEMS = (FIXTURE / 'items.json').read_text()
RAW = [json.loads(l) for l in SEQ]


@pytest.fixture(scope='module')
def fx(): return load_sequences(FIXTURE)


def write(tmp_path, seq=SEQ, items=ITEMS):
    "A copy of the fixture (possibly broken) in `tmp_path`."
    (tmp_path / 'sequences.jsonl').write_text(''.join(seq)); (tmp_path / 'items.json').write_text(items)
    return tmp_path


def error(tmp_path, seq=SEQ, items=ITEMS, **kw) -> DataError:
    with pytest.raises(DataError) as e: load_sequences(write(tmp_path, seq, items), **kw)
    return e.value


def line(k, **change):
    "The fixture's lines with line `k` (1-based) changed: fields set, or removed when set to None."
    r = json.loads(SEQ[k - 1]); r.update(change); r = {a: b for a, b in r.items() if b is not None}
    return SEQ[:k - 1] + [json.dumps(r) + '\n'] + SEQ[k:]


# ---------- the fixture ----------
def test_fixture_is_what_the_generator_writes(tmp_path):
    fresh = make_seq_fixture(tmp_path / 'fx')
    for f in ('sequences.jsonl', 'items.json'): assert (fresh / f).read_bytes() == (FIXTURE / f).read_bytes(), f
    assert sum((FIXTURE / f).stat().st_size for f in ('sequences.jsonl', 'items.json')) < 20_000


def test_fixture_loads(fx):
    assert isinstance(fx, Tables) and fx.name == 'seq_fixture'
    assert fx.users.user_id.tolist() == [r['user'] for r in RAW] and list(fx.users.columns) == ['user_id']
    assert len(fx.interactions) == sum(len(r['items']) for r in RAW)
    assert list(fx.interactions.columns) == ['user_id', 'item_id', 'rating', 'timestamp']
    assert fx.interactions.rating.dtype == np.float64 and fx.interactions.rating.isna().all()
    assert fx.interactions.timestamp.dtype == np.int64
    assert fx.items.item_id.is_unique and len(fx.items) == 110 and set(fx.items.item_id) == set(fx.interactions.item_id)
    assert list(fx.items.columns) == ['item_id', 'title', 'category', 'categories', 'brand']
    assert len(load_sequences(FIXTURE, all_items=True).items) == 111
    assert load_sequences(FIXTURE, name='x').name == 'x'


def test_timeline_from_gaps(fx):
    for r in RAW:
        mine = fx.interactions[fx.interactions.user_id == r['user']]
        assert mine.item_id.tolist() == r['items']                          # file order, same-day ties included
        assert mine.timestamp.tolist() == (np.cumsum(r['delta_sec']) - r['delta_sec'][0]).tolist()
    assert any(0 in r['delta_sec'][1:] for r in RAW)                       # the fixture does have ties
    # the split respects ties: test = last item of the file line, valid = the one before
    sp = leave_one_out(fx, n_neg=99, seed=0)
    t, v = sp.test.set_index('user_id').item_id, sp.valid.set_index('user_id').item_id
    for r in RAW: assert (t[r['user']], v[r['user']]) == (r['items'][-1], r['items'][-2])


def test_first_gap_ignored_and_no_gaps_field(tmp_path):
    seq = [json.dumps({'user': 'a', 'items': ['S0000', 'S0001', 'S0002'], 'delta_sec': [500, 0, 86400]}) + '\n']
    t = load_sequences(write(tmp_path, seq))
    assert t.interactions.timestamp.tolist() == [0, 0, 86400]
    seq = [json.dumps({'user': 'a', 'items': ['S0000', 'S0001', 'S0002']}) + '\n']
    assert load_sequences(write(tmp_path, seq), gaps_field=None).interactions.timestamp.tolist() == [0, 1, 2]


def test_other_field_names_and_numeric_ids(tmp_path):
    seq = [json.dumps({'uid': 7, 'seq': [1, 2], 'gaps': [0, 60.0]}) + '\n']
    items = json.dumps({'1': {'name': 'One', 'categories': ['Beauty', 'Nails']}, '2': {'name': 'Two &amp; more', 'categories': 'Misc'}})
    t = load_sequences(write(tmp_path, seq, items), user_field='uid', items_field='seq', gaps_field='gaps', title_field='name')
    assert t.users.user_id.tolist() == ['7'] and t.interactions.item_id.tolist() == ['1', '2']
    assert t.interactions.timestamp.tolist() == [0, 60]
    assert t.items.title.tolist() == ['One', 'Two & more'] and t.items.category.tolist() == ['Nails', 'Misc']


# ---------- bad inputs: file, line, field ----------
@pytest.mark.parametrize('case,where', [
    ('bad JSON',       ('sequences.jsonl', 3, None)),
    ('not an object',  ('sequences.jsonl', 3, None)),
    ('missing items',  ('sequences.jsonl', 3, 'items')),
    ('items not list', ('sequences.jsonl', 3, 'items')),
    ('empty items',    ('sequences.jsonl', 3, 'items')),
    ('missing gaps',   ('sequences.jsonl', 3, 'delta_sec')),
    ('gap length',     ('sequences.jsonl', 3, 'delta_sec')),
    ('negative gap',   ('sequences.jsonl', 3, 'delta_sec[2]')),
    ('fractional gap', ('sequences.jsonl', 3, 'delta_sec[2]')),
    ('string gap',     ('sequences.jsonl', 3, 'delta_sec[2]')),
    ('null gap',       ('sequences.jsonl', 3, 'delta_sec[2]')),
    ('missing user',   ('sequences.jsonl', 3, 'user')),
    ('empty user',     ('sequences.jsonl', 3, 'user')),
    ('user twice',     ('sequences.jsonl', len(SEQ) + 1, 'user')),
    ('unknown item',   ('sequences.jsonl', 3, 'items[1]')),
    ('item not str',   ('sequences.jsonl', 3, 'items[1]')),
    ('empty item id',  ('sequences.jsonl', 3, 'items[1]')),
    ('no title',       ('items.json', 4, 'title')),
    ('blank title',    ('items.json', 4, 'title')),
    ('title not str',  ('items.json', 4, 'title')),
    ('item not obj',   ('items.json', 4, 'S0002')),
    ('items bad JSON', ('items.json', 6, None)),
    ('items a list',   ('items.json', None, None)),
    ('duplicate key',  ('items.json', len(ITEMS.splitlines()) + 1, 'S0002')),
])
def test_bad_input_names_file_line_field(tmp_path, case, where):
    r3 = json.loads(SEQ[2]); g = r3['delta_sec']; its = r3['items']
    S2 = '"S0002": {"title": "Lumina Lip Balm, Vanilla", '
    assert S2 in ITEMS
    seq, items = {
        'bad JSON':       (SEQ[:2] + ['{"user": "X", "items": [\n'] + SEQ[3:], ITEMS),
        'not an object':  (SEQ[:2] + ['["X", ["S0000"]]\n'] + SEQ[3:], ITEMS),
        'missing items':  (line(3, items=None), ITEMS),
        'items not list': (line(3, items='S0000'), ITEMS),
        'empty items':    (line(3, items=[]), ITEMS),
        'missing gaps':   (line(3, delta_sec=None), ITEMS),
        'gap length':     (line(3, delta_sec=g + [0]), ITEMS),
        'negative gap':   (line(3, delta_sec=g[:2] + [-1] + g[3:]), ITEMS),
        'fractional gap': (line(3, delta_sec=g[:2] + [0.5] + g[3:]), ITEMS),
        'string gap':     (line(3, delta_sec=g[:2] + ['86400'] + g[3:]), ITEMS),
        'null gap':       (line(3, delta_sec=g[:2] + [None] + g[3:]), ITEMS),
        'missing user':   (line(3, user=None), ITEMS),
        'empty user':     (line(3, user=' '), ITEMS),
        'user twice':     (SEQ + SEQ[4:5], ITEMS),
        'unknown item':   (line(3, items=its[:1] + ['NOPE'] + its[2:]), ITEMS),
        'item not str':   (line(3, items=its[:1] + [['S0000']] + its[2:]), ITEMS),
        'empty item id':  (line(3, items=its[:1] + ['  '] + its[2:]), ITEMS),
        'no title':       (SEQ, ITEMS.replace(S2, '"S0002": {')),
        'blank title':    (SEQ, ITEMS.replace(S2, '"S0002": {"title": " \\t ", ')),
        'title not str':  (SEQ, ITEMS.replace(S2, '"S0002": {"title": 12, ')),
        'item not obj':   (SEQ, ITEMS.replace(S2, '"S0002": ["Lumina"], "x": {')),
        'items bad JSON': (SEQ, ITEMS.replace('"S0004": {', '"S0004" {')),
        'items a list':   (SEQ, '[1, 2]'),
        'duplicate key':  (SEQ, ITEMS.rstrip().rstrip('}') + ',\n"S0002": {"title": "again"}\n}\n'),
    }[case]
    e = error(tmp_path, seq, items)
    assert (Path(e.file).name, e.row, e.column) == where, str(e)
    assert str(e).startswith(str(tmp_path / where[0])), str(e)


def test_missing_files(tmp_path):
    (tmp_path / 'items.json').write_text(ITEMS)
    with pytest.raises(DataError, match='sequences.jsonl: expected an existing file'): load_sequences(tmp_path)
    (tmp_path / 'sequences.jsonl').write_text(''.join(SEQ)); (tmp_path / 'items.json').unlink()
    with pytest.raises(DataError, match='items.json: expected an existing file'): load_sequences(tmp_path)
    (tmp_path / 'items.json').write_text(ITEMS); (tmp_path / 'sequences.jsonl').write_text('\n\n')
    with pytest.raises(DataError, match='at least one user'): load_sequences(tmp_path)


# ---------- titles ----------
def test_html_decoded(fx):
    it = fx.items.set_index('item_id').title
    assert it['S0000'] == 'Koru Rose & Mint Soap, 3 oz'
    assert it['S0005'] == 'Solace Crème Brûlée Body Butter, 12" Jar \'Soft\''
    assert it['S0009'] == 'Verde Botanics Travel Kit — Crème Caramel'      # raw UTF-8 passes through
    assert not fx.items.title.str.contains(r'&[a-z]+;|&#\d+;').any()
    assert '&amp;' in ITEMS and (fx.items.title.str.contains('Petal & Pine')).any()
    assert clean_title('A &amp;amp; B') == 'A &amp; B'                     # decoded once, as the data says


def test_title_cap():
    long = ' '.join(f'w{i}' for i in range(40))
    assert clean_title(long).split() == [f'w{i}' for i in range(32)]
    assert clean_title(long, max_words=5) == 'w0 w1 w2 w3 w4'
    assert clean_title(long, max_words=None) == long
    assert clean_title('a b, - c d e', max_words=3) == 'a b'              # no dangling separators after the cut
    assert clean_title('  a \t b\n c ') == 'a b c'
    assert clean_title(', , , x', max_words=3) == ', , ,'                # never empty


def test_cap_in_loader(fx):
    t = fx.items.set_index('item_id').title
    assert len(t['S0006'].split()) == 32 and t['S0006'] == t['S0007']
    un = load_sequences(FIXTURE, max_title_words=None).items.set_index('item_id').title
    assert un['S0006'] != un['S0007'] and len(un['S0006'].split()) == 36
    assert load_sequences(FIXTURE, max_title_words=3).items.title.str.split().str.len().max() == 3


def test_collisions_disambiguated(fx):
    names = item_names(fx.items)
    shared = sorted(fx.items.item_id[fx.items.title.duplicated(keep=False)])
    assert shared == ['S0000', 'S0001', 'S0002', 'S0003', 'S0004', 'S0006', 'S0007']
    assert len(set(names.values())) == len(fx.items)
    for i in shared: assert names[i] == f"{fx.items.set_index('item_id').title[i]} [{i}]"
    assert names['S0005'] == fx.items.set_index('item_id').title['S0005']
    # names reach the text unchanged, whole, as entities
    sp = leave_one_out(fx, n_neg=99, seed=0)
    for s in textualize_corpus(fx, sp, names=names, periods='span'):
        check_sample(s)
        for k, e in enumerate(s.entities): assert s.surface(k) == names[e.key]


# ---------- command line ----------
def test_load_dataset_seq(fx):
    t = load_dataset(f'seq:{FIXTURE}')
    pd.testing.assert_frame_equal(t.interactions, fx.interactions)
    with pytest.raises(ValueError, match="'seq:<folder>'"): load_dataset('nope:x')


def test_cli_seq():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    res = subprocess.run([sys.executable, '-m', 'recsysllm_nb.sources', '--dataset', f'seq:{FIXTURE}', '--seed', '0'],
                         capture_output=True, text=True, cwd=ROOT, env=env)
    assert res.returncode == 0, res.stderr
    fx = load_sequences(FIXTURE)
    assert json.loads(res.stdout.splitlines()[-1]) == stats(fx, leave_one_out(fx, n_neg=99, seed=0))
    assert 'seq_fixture' in res.stdout


# ---------- the real Amazon Beauty folder ----------
HAVE_BEAUTY = (BEAUTY / 'sequences.jsonl').exists() and (BEAUTY / 'items.json').exists()

@pytest.mark.skipif(not HAVE_BEAUTY, reason=f'Amazon Beauty not found at {BEAUTY} (research-use data, not in the repo; '
                                            'set RECSYSLLM_BEAUTY to its folder to run this test)')
def test_real_beauty():
    t0 = time.perf_counter(); b = load_sequences(BEAUTY); dt = time.perf_counter() - t0
    assert (len(b.users), len(b.items), len(b.interactions)) == (22363, 12101, 198502)
    assert dt < 15, f'loading took {dt:.1f} s'
    g = b.interactions.groupby('user_id', sort=False)['timestamp']
    assert (g.first() == 0).all() and (g.diff().dropna() >= 0).all() and (b.interactions.timestamp % 86400 == 0).all()
    raw = json.loads((BEAUTY / 'items.json').read_text())
    dec = pd.Series([clean_title(raw[i]['title'], None) for i in b.items.item_id])
    assert (dec.duplicated(keep=False).sum(), dec[dec.duplicated(keep=False)].nunique()) == (55, 27)
    assert (b.items.title.duplicated(keep=False).sum(), b.items.title[b.items.title.duplicated(keep=False)].nunique()) == (57, 28)
    assert b.items.title.str.split().str.len().max() == 32 and (dec != b.items.title).sum() == 301
    assert len(set(item_names(b.items).values())) == 12101
    first = json.loads((BEAUTY / 'sequences.jsonl').open().readline())
    mine = b.interactions[b.interactions.user_id == first['user']]
    assert mine.item_id.tolist() == first['items'] and mine.timestamp.tolist() == np.cumsum(first['delta_sec']).tolist()
