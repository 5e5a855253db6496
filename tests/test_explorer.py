"""State tests of the mask / position explorer (headless): setting its attributes (or its widgets) changes what it shows."""
import numpy as np
import pytest
from recsysllm_nb.data import load_ml100k, leave_one_out
from recsysllm_nb.textualize import textualize_user, mark_entities, item_names
from recsysllm_nb.masking import LEVELS
from recsysllm_nb.positions import glm_block_ids, span_starts
from recsysllm_nb.explorer import Explorer, explorer_tokenizer, LEVEL_CHOICES
from recsysllm_nb.marked import parse_marked

BASE = dict(user='1', level='entity', ratio=0.15, seed=0, shuffle=False, mode='recsysllm', tokenizer_kind='bpe', text='')

@pytest.fixture(scope='module')
def data():
    tables = load_ml100k(); return tables, leave_one_out(tables)

@pytest.fixture
def ex(data):
    return Explorer(tables=data[0], split=data[1])

def spans(ex): return ex.masked.spans.tolist()

def cut_entities(ex):
    "Entities whose tokens are not all in one span or all outside every span (computed without the explorer's helper)."
    ent = ex.tokenized.entity
    span_of = np.full(len(ent), -1)
    for j, (s, e) in enumerate(ex.masked.spans.tolist()): span_of[s:e] = j
    return [k for k in np.unique(ent[ent >= 0]) if len(set(span_of[ent == k].tolist())) > 1]

def test_defaults_show_a_real_user(ex):
    t = ex.table
    assert ex.sample.user_id == '1' and ex.masked.level == 'entity'
    assert list(t.columns[:5]) == ['token', 'id', 'part', 'inter', 'intra']
    assert (t.part == 'A').sum() == len(ex.masked.part_a) and (t.part == 'B').sum() == len(ex.masked.part_b_in)
    assert (t.inter[t.part == 'B'].to_numpy() == ex.masked.mask_pos[ex.masked.b_span]).all()
    assert set(t.token[t.role == 'mask']) == {'[M]'} and set(t.token[t.role == 'sop']) == {'[S]'}
    assert 'user 1 |' in ex.strip_html and ex.strip_html.count('class="rs-tok ') == len(t)

def test_seed_changes_mask_and_is_deterministic(ex):
    a, html_a = spans(ex), ex.strip_html
    ex.set(seed=1)
    assert spans(ex) != a and ex.strip_html != html_a and 'seed 1' in ex.strip_html
    ex.set(seed=0)
    assert spans(ex) == a and ex.strip_html == html_a

def test_levels(ex):
    n = len(ex.tokenized.input_ids)
    ex.set(level='sentence')
    sent = ex.tokenized.sentence
    assert ex.masked.level == 'sentence' and set(ex.table.token[ex.table.role == 'mask']) == {'[sM]'}
    for s, e in spans(ex):                      # each span is whole sentences
        assert len(set(sent[s:e].tolist()) - {-1}) >= 1 and (s == 0 or sent[s - 1] != sent[s]) and (e == n or sent[e] != sent[e - 1])
    ex.set(level='document')
    assert ex.masked.level == 'document' and len(spans(ex)) == 1 and spans(ex)[0][1] == n
    assert set(ex.table.token[ex.table.role == 'mask']) == {'[gM]'}
    assert spans(ex)[0][1] - spans(ex)[0][0] >= n // 2
    drawn = {ex.set(level='mixture', seed=s).masked.level for s in range(12)}
    assert drawn <= set(LEVELS) and len(drawn) >= 2
    assert 'level mixture (drew ' in ex.strip_html
    with pytest.raises(ValueError, match='level must be one of'): ex.set(level='word')
    assert LEVEL_CHOICES == LEVELS + ('mixture',)

def test_ratio_changes_how_much_is_masked(ex):
    covered = lambda: sum(e - s for s, e in spans(ex))
    lo = covered()
    ex.set(ratio=0.5)
    assert covered() > lo and (ex.table.part == 'B').sum() > covered()
    assert 'ratio 0.5' in ex.strip_html

def test_user_changes_text(ex):
    t1 = ex.table.token.tolist()
    ex.set(user='2')
    assert ex.sample.user_id == '2' and ex.table.token.tolist() != t1 and 'user 2 |' in ex.strip_html
    with pytest.raises(ValueError, match='user_id'): ex.set(user='no-such-user')

def test_glm_mode_shows_block_ids(ex):
    for seed in range(5):
        ex.set(mode='glm', seed=seed, shuffle=True)
        t, m = ex.table, ex.masked
        assert (m.a_entity == -1).all() and (m.b_entity == -1).all()
        assert (t.intra[t.part == 'A'] == 0).all()
        assert (t.intra[t.part == 'B'].to_numpy() == glm_block_ids(span_starts(m.b_span))).all()
        assert (t.inter[t.part == 'B'].to_numpy() == m.mask_pos[m.b_span]).all()
    assert 'mode glm' in ex.strip_html

def test_recsysllm_mode_never_splits_an_entity_and_glm_does(ex):
    for level in ('entity', 'sentence', 'document', 'mixture'):
        for shuffle in (False, True):
            for seed in range(8):
                ex.set(level=level, seed=seed, shuffle=shuffle, mode='recsysllm')
                assert cut_entities(ex) == [] and ex.split_entities == [], (level, shuffle, seed)
                t = ex.table   # Part A entity intra ids count 1..n along each entity
                a = t[(t.part == 'A') & (t.entity >= 0)]
                first = a.entity.ne(a.entity.shift())
                assert (a.intra[first] == 1).all()
    glm_cut = [s for s in range(10) if cut_entities(ex.set(mode='glm', level='entity', seed=s))]
    assert glm_cut, 'GLM mode (token units) should cut some entity in 10 seeds'
    assert ex.split_entities == cut_entities(ex)
    assert 'rs-cut' in ex.strip_html

def test_span_order(ex):
    ex.set(ratio=0.3)
    for seed in range(6): assert spans(ex.set(seed=seed)) == sorted(spans(ex))
    orders = [spans(ex.set(seed=s, shuffle=True)) for s in range(6)]
    assert any(o != sorted(o) for o in orders) and 'shuffled' in ex.strip_html

def test_tokenizer_kinds_are_trained_once(ex):
    ids_bpe = ex.table.id.tolist()
    ex.set(tokenizer_kind='wordpiece')
    assert ex.table.id.tolist() != ids_bpe and 'tokenizer wordpiece' in ex.strip_html
    assert cut_entities(ex) == []
    assert explorer_tokenizer('wordpiece') is ex.tokenizer
    with pytest.raises(ValueError, match='one of'): ex.set(tokenizer_kind='gpt9')

def test_parse_marked_round_trip_and_pasted_text(ex, data):
    tables, split = data
    names = item_names(tables.items)
    for u in ('1', '13', '405'):
        s = textualize_user(tables, split, u, names=names)
        assert parse_marked(mark_entities(s), names=names, user_id=u) == s
    p = parse_marked('The user is ⟨female⟩. Most recently, the user rated ⟦Toy Story⟧; ⟦Mr. Holland\'s Opus⟧; ⟦My Film⟧.',
                     names=names)
    assert [(p.surface(i), e.kind, e.key) for i, e in enumerate(p.entities)] == [
        ('female', 'feature', 'gender'), ('Toy Story', 'item', '1'), ("Mr. Holland's Opus", 'item', '15'),
        ('My Film', 'item', 'My Film')]
    assert len(p.sentences) == 2        # the '.' inside a title ends no sentence
    ex.set(text=mark_entities(p))
    assert 'pasted text' in ex.strip_html and [e.key for e in ex.sample.entities] == ['gender', '1', '15', 'My Film']
    assert set(ex.table.entity[ex.table.entity >= 0]) <= {0, 1, 2, 3}
    for bad, msg in [('⟦a ⟨b⟩⟧', 'cannot nest'), ('⟦a⟩', 'closes no open'), ('x ⟨a', 'never closed')]:
        with pytest.raises(ValueError, match=msg): parse_marked(bad)

def test_widgets_drive_the_state(ex):
    ui = ex.widget(max_cols=32)
    c, v = ex.controls, ex.views
    assert set(c) == {'user', 'level', 'ratio', 'seed', 'shuffle', 'mode', 'tokenizer_kind', 'text'}
    tab = v['table'].value
    assert tab == ex.position_html(32) and tab.count('<td') == 4 * 32 and v['attention'].value[:4] == b'\x89PNG'
    before = v['strip'].value
    c['seed'].value = 5
    assert ex.seed == 5 and v['strip'].value == ex.strip_html != before and 'seed 5' in v['strip'].value
    assert v['table'].value == ex.position_html(32) != tab
    c['level'].value = 'document'
    assert ex.masked.level == 'document' and '[gM]' in v['strip'].value
    c['mode'].value = 'glm'
    assert (ex.table.intra[ex.table.part == 'A'] == 0).all()
    c['text'].value = '⟦never closed'
    assert 'never closed' in v['error'].value
    c['text'].value = ''
    assert v['error'].value == '' and ui.children

def test_position_html(ex):
    "The position table as HTML: one cell per token in each of token / part / inter / intra, token text escaped."
    import re, html
    def rows(h):
        return {k: re.findall(r'<td class="([^"]*)">(.*?)</td>', c) for k, c in re.findall(r'<tr><th>(\w+)</th>(.*?)</tr>', h)}
    for kw in (dict(), dict(level='sentence', seed=2), dict(mode='glm', shuffle=True, seed=1)):
        r, t = rows(ex.set(**{**BASE, **kw}).position_html()), ex.table
        assert list(r) == ['token', 'part', 'inter', 'intra'] and all(len(c) == len(t) for c in r.values())
        assert [int(x) for _, x in r['inter']] == ex.positions[0].tolist() == t.inter.tolist()
        assert [int(x) for _, x in r['intra']] == ex.positions[1].tolist() == t.intra.tolist()
        assert [x for _, x in r['part']] == t.part.tolist()
        assert [html.unescape(x) for _, x in r['token']] == t.token.tolist()
        colours = [[f'rs-{p.lower()}', f'rs-{q}'] for p, q in zip(t.part, t.role)]       # the strip's classes
        assert [c.split()[:2] for c, _ in r['token']] == colours
        assert [k for k, (c, _) in enumerate(r['token']) if 'rs-first-b' in c] == [ex.prefix_len]
    assert any('rs-cut' in c for c, _ in r['token']) == bool(ex.split_entities)
    assert len(rows(ex.position_html(max_cols=20))['inter']) == len(ex.table_cols(20)) <= 20
    ex.set(**{**BASE, 'text': 'The user rated ⟦Tom & <Jerry>⟧.'})
    h = ex.position_html()
    assert '<Jerry' not in h and '&amp;' in h and '&lt;' in h
    assert 'Tom & <Jerry>' in ''.join(html.unescape(x) for _, x in rows(h)['token'])

def test_nbclient_widget_state(tmp_path):
    "The explorer in a real kernel (nbclient): the saved widget state holds the rendered strip."
    nbformat = pytest.importorskip('nbformat'); nbclient = pytest.importorskip('nbclient')
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from recsysllm_nb.explorer import Explorer\n"
                                          "ex = Explorer(user='5', level='sentence', seed=3)\nui = ex.widget(max_cols=24)\nui")]
    nb.metadata['kernelspec'] = dict(name='python3', display_name='Python 3', language='python')
    nbclient.NotebookClient(nb, timeout=300, kernel_name='python3', store_widget_state=True,
                            resources={'metadata': {'path': str(tmp_path)}}).execute()
    state = nb.metadata['widgets']['application/vnd.jupyter.widget-state+json']['state']
    html = [s['state'].get('value', '') for s in state.values() if s['model_name'] == 'HTMLModel']
    assert any('user 5 | tokenizer bpe | mode recsysllm | level sentence | seed 3' in h and '[sM]' in h for h in html)
    assert any(s['model_name'] == 'ImageModel' for s in state.values())
    assert any('<table class="rs-ptable">' in h and '[sM]</td>' in h for h in html)

def test_trie_steps_decode_a_real_item(ex):
    import torch
    from recsysllm_nb.glm import GLMForCausalLM, tiny_glm_config
    torch.manual_seed(0)
    model = GLMForCausalLM(tiny_glm_config(vocab_size=len(ex.tokenizer), max_sequence_length=512)).eval()
    ex.set(user='7', text='')
    steps = ex.trie_steps(model)
    assert steps['intra'].tolist()[:2] == [1, 2]
    assert steps['entities_below'].iloc[-1] >= 1 and steps['allowed_next'].iloc[0] > 1
    ex.set(text='The user rated ⟦Heat⟧.')
    with pytest.raises(ValueError, match='pasted text'): ex.trie_steps(model)
    ex.set(text='')
