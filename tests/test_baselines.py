"""Baselines on real ML-100K: each beats random (sequential full ranking and 1 + 99 candidates), MF beats the global mean,
fits are deterministic under a seed, and fitting never touches the test rows or the saved negatives."""
import dataclasses
import numpy as np
import pandas as pd
import pytest
from pathlib import Path
from recsysllm_nb.data import load_ml100k, leave_one_out
from recsysllm_nb.sequences import load_sequences
from recsysllm_nb.metrics import rank_from_scores, rank_excluding_history, ranking_metrics
from recsysllm_nb.baselines import (RandomScorer, Popularity, MF, BPRMF, eval_sequential, eval_direct, eval_rating,
                                    user_histories, direct_candidates, run_baselines, results_table)
from recsysllm_nb.sasrec import SASRec

REPEATS = Path(__file__).resolve().parents[1] / 'data_samples' / 'repeat_fixture'


@pytest.fixture(scope='module')
def data():
    t = load_ml100k()
    return t, leave_one_out(t)

@pytest.fixture(scope='module')
def random_scores(data):
    t, s = data
    r = RandomScorer().fit(t, s)
    return eval_sequential(r, t, s), eval_direct(r, t, s)


class Forbidden:
    "Stands in for split.test / split.negatives: any use during fit fails the test."
    def __getattr__(self, k): raise AssertionError(f'fit touched forbidden data (.{k})')
    def __getitem__(self, k): raise AssertionError(f'fit touched forbidden data ([{k!r}])')
    def __len__(self): raise AssertionError('fit touched forbidden data (len)')


def test_random_floor(random_scores):
    seq, dire = random_scores
    assert seq['HR@10'] < 0.03 and 0.05 < dire['HR@10'] < 0.15 and seq['n'] == dire['n'] == 943


TINY = dict(max_len=20, windows=False, progress=False)   # SASRec on each user's last 20 steps only: quick tests


@pytest.mark.parametrize('make', [Popularity, lambda: BPRMF(epochs=6, progress=False), lambda: SASRec(epochs=3, lr=5e-3, **TINY)],
                         ids=['popularity', 'bprmf', 'sasrec'])
def test_beats_random(data, random_scores, make):
    t, s = data
    m = make().fit(t, s, seed=0)
    seq, dire = eval_sequential(m, t, s), eval_direct(m, t, s)
    assert seq['HR@10'] > 3 * max(random_scores[0]['HR@10'], 10 / 1682), seq
    assert dire['HR@10'] > 2 * random_scores[1]['HR@10'] and dire['NDCG@10'] > 2 * random_scores[1]['NDCG@10'], dire


def test_mf_beats_global_mean(data):
    t, s = data
    gm, mf = eval_rating(Popularity().fit(t, s), t, s), eval_rating(MF(progress=False).fit(t, s), t, s)
    assert mf['RMSE'] < gm['RMSE'] - 0.05 and mf['MAE'] < gm['MAE'] and mf['n'] == 943 and mf['n_unparsed'] == 0
    assert gm['fallback'] == pytest.approx(s.train['rating'].mean())


@pytest.mark.parametrize('make', [lambda: MF(epochs=2, progress=False), lambda: BPRMF(epochs=2, progress=False),
                                  lambda: SASRec(epochs=1, **TINY)], ids=['mf', 'bprmf', 'sasrec'])
def test_deterministic_under_seed(data, make):
    t, s = data
    users, hist = s.test['user_id'][:20].tolist(), user_histories(s, s.test['user_id'][:20], 'test')
    def out(seed):
        m = make().fit(t, s, seed=seed)
        return m.predict_rating(users, s.test['item_id'][:20].tolist()) if m.name == 'MF' else m.score_all(users, hist)
    a, b, c = out(0), out(0), out(1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    r = RandomScorer().fit(t, s, seed=0)
    assert np.array_equal(r.score_all(users[:3]), r.score_all(users)[:3])   # random scores do not depend on the batch


@pytest.mark.parametrize('make', [RandomScorer, Popularity, lambda: MF(epochs=2, progress=False),
                                  lambda: BPRMF(epochs=2, progress=False), lambda: SASRec(epochs=1, **TINY)],
                         ids=['random', 'popularity', 'mf', 'bprmf', 'sasrec'])
def test_fit_never_sees_test(data, make):
    t, s = data
    blind = dataclasses.replace(s, test=Forbidden(), negatives=Forbidden())
    m = make().fit(t, blind, seed=0)          # fit reads split.train (and split.valid for early stopping) only
    ref = make().fit(t, s, seed=0)            # ... so the fitted model is the same as with the real test rows
    users = s.test['user_id'][:30].tolist(); hist = user_histories(s, users, 'test')
    if 'rating' in m.tasks:
        its = s.test['item_id'][:30].tolist()
        assert np.array_equal(m.predict_rating(users, its), ref.predict_rating(users, its))
    if 'sequential' in m.tasks: assert np.array_equal(m.score_all(users, hist), ref.score_all(users, hist))
    # and the training pairs it holds are exactly split.train's: no test (or valid) pair among them
    test_keys = m.uix(s.test['user_id']) * m.n_items + m.iix(s.test['item_id'])
    valid_keys = m.uix(s.valid['user_id']) * m.n_items + m.iix(s.valid['item_id'])
    assert not np.isin(test_keys, m.seen_pairs).any() and not np.isin(valid_keys, m.seen_pairs).any()
    assert len(m.tu) == len(s.train)


def test_popularity_counts_train_only(data):
    t, s = data
    p = Popularity().fit(t, s)
    assert p.counts.sum() == len(s.train)
    assert np.array_equal(p.counts, s.train['item_id'].value_counts().reindex(t.items['item_id'], fill_value=0).to_numpy())


def test_histories_and_candidates(data):
    t, s = data
    users = s.test['user_id'].tolist()
    hv, ht = user_histories(s, users, 'valid'), user_histories(s, users, 'test')
    assert all(b == a + [v] for a, b, v in zip(hv, ht, s.valid['item_id']))
    assert sum(map(len, hv)) == len(s.train)
    with pytest.raises(ValueError, match="'valid' or 'test'"): user_histories(s, users, 'train')
    us, cands = direct_candidates(s, 'test')
    neg = s.negatives.set_index('user_id')['items']
    assert all(c[0] == p and c[1:] == list(neg[u]) and len(c) == 100 for u, p, c in zip(us, s.test['item_id'], cands))
    _, cv = direct_candidates(s, 'valid')
    assert [c[1:] for c in cv] == [c[1:] for c in cands]     # the same saved negatives for valid and test


def test_history_excluded_one_rule(data):
    "Full ranking leaves the history out (the one rule of metrics.rank_excluding_history), whatever the batch size."
    t, s = data
    p = Popularity().fit(t, s)
    a = eval_sequential(p, t, s)
    users = s.test['user_id'].tolist(); hist = user_histories(s, users, 'test')
    items = t.items['item_id'].tolist(); S = p.score_all(users)
    tie_u = np.random.default_rng(0).random(len(users))
    plain = rank_from_scores(S, pd.Index(items).get_indexer(s.test['item_id']), tie_u=tie_u)   # history kept in
    assert a['mean_rank'] < ranking_metrics(plain)['mean_rank'] and a['n_repeated'] == 0
    assert a['HR@10'] == ranking_metrics(rank_excluding_history(s.test['item_id'], hist, S, items, tie_u=tie_u))['HR@10']
    assert eval_sequential(p, t, s, batch_size=100)['HR@10'] == a['HR@10']   # batch size does not move ties
    with pytest.raises(TypeError): eval_sequential(p, t, s, exclude_history=False)   # no switch around the rule


class _Oracle(Popularity):
    "Scores each user's test item 1 and every other item 0."
    def score_all(self, users, history=None):
        return (self.items.to_numpy()[None, :] == np.array([self.hit[u] for u in users], dtype=object)[:, None]).astype(float)


def test_repeated_targets_are_misses():
    "The repeat fixture: 5 of 12 test items repeat the user's history; an oracle misses exactly those, in both families."
    t = load_sequences(REPEATS); s = leave_one_out(t)
    o = _Oracle().fit(t, s); o.hit = dict(zip(s.test['user_id'], s.test['item_id']))
    seq, dire = eval_sequential(o, t, s), eval_direct(o, t, s)
    assert seq['n_repeated'] == dire['n_repeated'] == 5 and seq['n'] == dire['n'] == 12
    assert seq['HR@10'] == seq['NDCG@10'] == dire['HR@1'] == 7 / 12


def test_unknown_ids_are_named(data):
    t, s = data
    p = Popularity().fit(t, s)
    with pytest.raises(KeyError, match="unknown user id 'nobody'"): p.score_all(['nobody'])
    with pytest.raises(KeyError, match="unknown item id 'x'"): p.score_candidates(['1'], [['x']])
    with pytest.raises(NotImplementedError, match='does not predict ratings'): BPRMF().predict_rating(['1'], ['1'])


def test_run_baselines_table(data):
    t, s = data
    res, fitted = run_baselines(t, s, [RandomScorer(), Popularity()], progress=False)
    assert set(fitted) == {'Random', 'Popularity'}
    assert set(res.columns) == {'model', 'task', 'part', 'metric', 'value'}
    tab = results_table(res, 'test')
    assert ('direct', 'HR@1') in tab.columns and ('rating', 'RMSE') in tab.columns and list(tab.index) == ['Random', 'Popularity']


def test_budget_config():
    from recsysllm_nb.baselines import Budget
    assert Budget() == Budget(200, 10, 1)            # the authors' / RecBole's schedule is the default
    assert SASRec(epochs=3).budget == Budget(3, 10, 1)
    assert BPRMF(budget=Budget(5, 2), eval_every=2).budget == Budget(5, 2, 2)
    for bad in (dict(epochs=0), dict(patience=-1), dict(eval_every=1.5), dict(epochs=True)):
        with pytest.raises(ValueError, match=f'Budget.{next(iter(bad))} must be an integer >= 1'): Budget(**bad)
    with pytest.raises(ValueError, match="loss must be 'ce' or 'bce'"): SASRec(loss='bpr')


@pytest.mark.parametrize('make', [lambda: BPRMF(epochs=6, patience=2, eval_every=2, progress=False),
                                  lambda: SASRec(epochs=4, patience=1, batch_size=64, lr=1e-2, **TINY),
                                  lambda: SASRec(loss='bce', epochs=2, **TINY)],
                         ids=['bprmf', 'sasrec-ce', 'sasrec-bce'])
def test_early_stopping_keeps_best(data, make):
    t, s = data
    m = make().fit(t, s, seed=0)
    b = m.budget
    epochs = [e for e, _, _ in m.history_]
    vals = [v for _, _, v in m.history_]
    assert epochs == [e for e in range(1, m.epochs_ + 1) if e % b.eval_every == 0 or e == b.epochs]   # every k epochs
    assert m.best_valid_ == max(vals) and m.best_epoch_ == epochs[int(np.argmax(vals))]
    bad = len(vals) - 1 - int(np.argmax(vals))               # evaluations after the best
    assert bad <= b.patience and (m.epochs_ == b.epochs or bad == b.patience)   # stopped by patience or by the budget
    # the weights kept are those of the best evaluation: validation NDCG@10 recomputed from them is the best value
    assert eval_sequential(m, t, s, 'valid', ks=(10,))['NDCG@10'] == pytest.approx(m.best_valid_, abs=1e-12)
    assert all(np.isfinite(l) and l > 0 for _, l, _ in m.history_) and m.fit_seconds_ > 0


def test_sasrec_batches_and_trimmed_padding(data):
    t, s = data
    from recsysllm_nb.sasrec import _SASNet
    m = SASRec(batch_size=100)._setup(t, s)
    inp, pos, owner = m._examples()
    assert (pos > 0).sum() == len(s.train) - s.train['user_id'].nunique()   # every training item but the first is a target
    lens = (inp > 0).sum(1)
    bs = m._batches(lens, np.random.default_rng(0))
    assert np.array_equal(np.sort(np.concatenate(bs)), np.arange(len(inp))) and max(map(len, bs)) == 100
    # dropping the all-padding columns of a batch leaves the hidden states of the real positions unchanged
    import torch
    x = torch.as_tensor(inp[np.argsort(lens)[:30]]); c = m.max_len - int((x > 0).sum(1).max())
    assert c > 0
    torch.manual_seed(0); net = _SASNet(m.n_items, 64, m.max_len, 2, 1, 0.5).eval()
    with torch.no_grad(): full, cut = net(x)[:, c:], net(x[:, c:])
    real = x[:, c:] > 0
    assert torch.allclose(full[real], cut[real], atol=1e-5)
