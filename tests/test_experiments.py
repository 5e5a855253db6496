"""End-to-end experiment: a tiny model trained on text + seen-template prompts, evaluated beside baselines on ~20 test users."""
import json, warnings
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
from recsysllm_nb.data import load_ml100k, leave_one_out
from recsysllm_nb.textualize import item_names
from recsysllm_nb.tokenizer import demo_tokenizer
from recsysllm_nb.tasks import TEMPLATES, build_tasks
from recsysllm_nb.baselines import RandomScorer, Popularity, BPRMF
from recsysllm_nb.experiments import eval_prompts, eval_users, METRICS
from recsysllm_nb.report import ExperimentConfig, paper_tables, run_experiments
from recsysllm_nb.task_training import pretrain_with_tasks, training_leaks

warnings.filterwarnings('ignore', message='.*tasks skipped.*')


@pytest.fixture(scope='module')
def ml():
    tables = load_ml100k(); split = leave_one_out(tables, seed=0)
    return tables, split, demo_tokenizer(), item_names(tables.items)


@pytest.fixture(scope='module')
def e2e(ml, tmp_path_factory):
    "A tiny GLM, 6 steps on 60 users' training text and prompts; evaluated on 20 test users with 3 baselines."
    tables, split, tok, _ = ml
    d = tmp_path_factory.mktemp('exp')
    users = eval_users(split, 20, seed=0)
    run = pretrain_with_tasks(tables, split, d / 'model', tok, steps=6, size='tiny', batch_size=8, progress=False,
                              users=users + tables.users['user_id'][:40].tolist())
    exp = run_experiments(tables, split, run['model'], tok, d / 'report', ExperimentConfig(n_users=20, beams=5, progress=False),
                          direct_modes=('candidates',),
                          baseline_models=[RandomScorer(), Popularity(), BPRMF(epochs=3, progress=False)])
    return exp, d / 'report'


def test_report_files_and_keys(e2e):
    exp, d = e2e
    for f in ('report.md', 'results.json', 'results.csv', 'config.json', 'predictions.json', 'rating.png', 'sequential.png', 'direct.png'):
        assert (d / f).exists() and (d / f).stat().st_size > 0, f
    rep = json.loads((d / 'results.json').read_text())
    assert {'config', 'seed', 'users', 'protocol', 'tables', 'tables_all_users', 'rows', 'run'} <= set(rep)
    assert rep['seed'] == 0 and len(rep['users']) == 20 and rep['config']['beams'] == 5
    assert sorted(rep['tables']) == ['direct', 'rating', 'sequential']      # ML-100K has no explanation / review text
    for fam, rows in rep['tables'].items():
        cols = set(rows[0])
        assert set(METRICS[fam]) <= cols, (fam, cols)
        llm = [r for r in rows if r['model'] == 'RecSysLLM']
        assert sorted(r['prompts'] for r in llm) == ['seen', 'unseen']      # a row per prompt set
        assert all(r['n'] == 20 for r in llm)
    assert all(r['n_unparsed'] >= 0 for r in rep['tables']['rating'])
    md = (d / 'report.md').read_text()
    for fam in ('rating', 'sequential', 'direct'): assert f'## {fam} (test, 20 users)' in md
    assert '20 beams' not in md and '5 beams' in md


def test_seen_unseen_separation(e2e, ml):
    exp, d = e2e
    preds = json.loads((d / 'predictions.json').read_text())
    for key, rows in preds.items():
        fam, ps, mode = key.split('/')
        assert rows and all(TEMPLATES[r['template']].seen == (ps == 'seen') for r in rows), key
        assert all(TEMPLATES[r['template']].family == fam for r in rows)
    tables, split, tok, names = ml
    sets = eval_prompts(tables, split, eval_users(split, 30, 1), names=names)
    for (fam, ps, mode), samples in sets.items():
        assert all(s.seen == (ps == 'seen') and s.split == 'test' for s in samples)
        assert len({s.user_id for s in samples}) == len(samples) == 30       # one prompt per user and prompt set


def test_no_test_pair_in_training_data(ml):
    tables, split, tok, names = ml
    tasks = build_tasks(tables, split, ['rating', 'sequential', 'direct'], 'train', names=names)   # as `training_data` builds them
    assert tasks and all(t.seen and t.split == 'train' for t in tasks)
    from recsysllm_nb.textualize import textualize_corpus
    corpus = textualize_corpus(tables, split, names=names) + textualize_corpus(tables, split, n_items=None, names=names)
    assert training_leaks(tasks, corpus, split, names) == []
    # the check is not vacuous: the test prompts of the same users show their test items
    test_tasks = build_tasks(tables, split, ['sequential'], 'test', users=['1', '2'], names=names)
    assert training_leaks(test_tasks, [], split, names)


def test_baselines_beat_random(e2e):
    exp, d = e2e
    rep = json.loads((d / 'results.json').read_text())
    for tabs in (rep['tables_all_users'], ):
        seq = {r['model']: r for r in tabs['sequential']}
        direct = {r['model']: r for r in tabs['direct']}
        assert {'Random', 'Popularity', 'BPR-MF'} <= set(seq)
        for m in ('Popularity', 'BPR-MF'):
            assert seq[m]['HR@10'] > seq['Random']['HR@10'] and direct[m]['HR@10'] > direct['Random']['HR@10'], m
    subset = paper_tables(exp['rows'])['direct'].set_index('model')
    assert {'RecSysLLM', 'Random', 'Popularity', 'BPR-MF'} <= set(subset.index)   # side by side, same users
    assert (subset['n'] == 20).all()


# ---------------------------------------------------------------- repeated items: one rule on both sides
REPEATS = Path(__file__).resolve().parents[1] / 'data_samples' / 'repeat_fixture'


@pytest.fixture(scope='module')
def repeats():
    from recsysllm_nb.sequences import load_sequences
    from recsysllm_nb.baselines import user_histories
    t = load_sequences(REPEATS); s = leave_one_out(t); names = item_names(t.items)
    users = s.test['user_id'].tolist()
    seen = dict(zip(users, map(tuple, user_histories(s, users, 'test'))))
    return t, s, names, seen, dict(zip(s.test['user_id'], s.test['item_id']))


class _Oracle(Popularity):
    "A baseline that scores each test user's test item 1 and every other item 0."
    def score_all(self, users, history=None):
        return (self.items.to_numpy()[None, :] == np.array([self.truth[u] for u in users], dtype=object)[:, None]).astype(float)


def test_repeated_items_same_rule_recsysllm_and_baselines(repeats, monkeypatch):
    """On data with repeat purchases (5 of 12 test items repeat the user's history), an oracle RecSysLLM (its beams and
    candidate scores put the test item first; its beams even list history items, as a decoder without the trie's
    exclusion would) and an oracle baseline get the same per-user outcome: a miss exactly on the 5 repeats."""
    from recsysllm_nb import experiments as E
    from recsysllm_nb.trie import EntityTrie
    from recsysllm_nb.decode import Hit
    from recsysllm_nb.baselines import eval_sequential, eval_direct
    t, s, names, seen, truth = repeats
    tok = demo_tokenizer()
    users = list(truth)
    sets = eval_prompts(t, s, users, ('sequential', 'direct'), names=names)
    def beams(model, prompts, trie, ids, k=10, **kw):
        return [[Hit(names[i], [i], 0.0, ()) for i in [truth[p.user_id], *p.seen][:k]] for p in prompts]
    def cands(model, prompt, trie, candidates, ids, **kw):
        return [Hit(names[c], [c], float(c == truth[prompt.user_id]), ()) for c in candidates]
    monkeypatch.setattr(E, 'generate_entities', beams); monkeypatch.setattr(E, 'rank_candidates', cands)
    trie = EntityTrie.from_names(names, tok)
    seq, tops = E.score_sequential(None, tok, sets[('sequential', 'seen', 'beam')], trie, seen)
    d_samples = sets[('direct', 'seen', 'candidates')]
    dire, ranks = E.score_direct(None, tok, d_samples, trie, names, seen=seen)
    rep = np.array([truth[ts.user_id] in seen[ts.user_id] for ts in d_samples])
    assert rep.sum() == 5 and seq['n_repeated'] == dire['n_repeated'] == 5
    assert np.isinf(ranks[rep]).all() and (ranks[~rep] == 1).all()
    orc = _Oracle().fit(t, s); orc.truth = truth
    b_seq, b_dir = eval_sequential(orc, t, s), eval_direct(orc, t, s)
    for k in ('HR@5', 'NDCG@5', 'HR@10', 'NDCG@10', 'n', 'n_repeated'): assert seq[k] == b_seq[k], k
    for k in ('HR@1', 'HR@5', 'NDCG@5', 'HR@10', 'NDCG@10', 'n', 'n_repeated'): assert dire[k] == b_dir[k], k
    assert seq['HR@10'] == dire['HR@1'] == 7 / 12


def test_repeated_items_real_decoding(repeats):
    "A real (untrained) tiny GLM with the trie's exclusion: the repeated test items are never produced, always a miss."
    from recsysllm_nb.models import build_model
    from recsysllm_nb.trie import EntityTrie
    from recsysllm_nb.experiments import score_sequential, score_direct
    t, s, names, seen, truth = repeats
    tok = demo_tokenizer()
    model = build_model('glm', 'tiny', len(tok), seed=0, pad_token_id=tok.pad_token_id).eval()
    sets = eval_prompts(t, s, list(truth), ('sequential', 'direct'), names=names)
    trie = EntityTrie.from_names(names, tok)
    seq, tops = score_sequential(model, tok, sets[('sequential', 'unseen', 'beam')], trie, seen, beams=5)
    dire, ranks = score_direct(model, tok, sets[('direct', 'unseen', 'candidates')], trie, names, seen=seen)
    rep = np.array([truth[ts.user_id] in seen[ts.user_id] for ts in sets[('direct', 'unseen', 'candidates')]])
    assert seq['n_repeated'] == dire['n_repeated'] == rep.sum() == 5
    assert np.isinf(ranks[rep]).all() and np.isfinite(ranks[~rep]).all()
    assert not any(set(tp) & set(seen[ts.user_id]) for tp, ts in zip(tops, sets[('sequential', 'unseen', 'beam')]))
