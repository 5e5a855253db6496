"""Metrics against hand-computed cases: ratings (parse, fallback, clip), HR@k / NDCG@k (ranks, lists, scores, ties, k edges), BLEU, ROUGE."""
import importlib.util, math
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
from recsysllm_nb.metrics import (parse_ratings, rating_metrics, hit_at_k, ndcg_at_k, ranking_metrics,
                                  rank_in_list, rank_from_scores, rank_excluding_history, repeated_targets, bleu, rouge,
                                  text_metrics)

REPEATS = Path(__file__).resolve().parents[1] / 'data_samples' / 'repeat_fixture'

BLEU = 'BLEU-4 (sacrebleu 13a, x100)'
R1, R2, RL = (f'ROUGE-{k} F (rouge-score, x100)' for k in ('1', '2', 'L'))


# ---- ratings
def test_parse_numbers_and_text():
    v, bad = parse_ratings([4, 3.5, '4', ' 2.0\n', 'rating: 5 stars', '-1', '.5', '1e0'])
    assert v.tolist() == [4, 3.5, 4, 2, 5, -1, 0.5, 1] and not bad.any()

def test_parse_failures_counted():
    v, bad = parse_ratings(['five', '', '   ', None, float('nan'), float('inf'), 'inf', 'nan', True, [4]])
    assert bad.all() and np.isnan(v).all()

def test_parse_strict():
    assert parse_ratings(['4', ' 4.5 ', '4 stars', 'about 3'], strict=True)[1].tolist() == [False, False, True, True]

def test_rating_hand_case_with_fallback_and_clip():
    m = rating_metrics(['4', 'banana', '7'], [4, 2, 5])   # errors 0, |3-2|, 0 (7 clipped to 5)
    assert m['RMSE'] == pytest.approx(math.sqrt(1 / 3)) and m['MAE'] == pytest.approx(1 / 3)
    assert (m['n'], m['n_unparsed'], m['n_clipped'], m['fallback'], m['range']) == (3, 1, 1, 3.0, (1.0, 5.0))

def test_rating_custom_fallback_and_scale():
    m = rating_metrics(['?', '?'], [1, 5], fallback=3.5)
    assert m['MAE'] == pytest.approx((2.5 + 1.5) / 2) and m['n_unparsed'] == 2 and m['fallback'] == 3.5
    m = rating_metrics(['0', '12'], [0, 10], lo=0, hi=10)   # 12 clipped to 10; default fallback is the middle, 5
    assert m['RMSE'] == 0 and m['n_clipped'] == 1 and m['fallback'] == 5.0
    assert rating_metrics(['0.2'], [1])['MAE'] == 0   # below the scale: clipped up to lo

def test_unparsed_never_dropped():
    y = np.array([5.0] * 10)
    m = rating_metrics(['5'] * 9 + ['no idea'], y, fallback=1.0)
    assert m['n'] == 10 and m['n_unparsed'] == 1 and m['MAE'] == pytest.approx(0.4)

def test_unparsed_scored_as_middle_of_scale_by_default():
    m = rating_metrics([1, 'x'], [2, 3])
    assert m['RMSE'] == pytest.approx(math.sqrt(0.5)) and m['MAE'] == pytest.approx(0.5)
    assert m['n_unparsed'] == 1 and m['fallback'] == 3.0

def test_rating_errors():
    with pytest.raises(ValueError, match='2 outputs but 1'): rating_metrics([1, 2], [1])
    with pytest.raises(ValueError, match='no examples'): rating_metrics([], [])
    with pytest.raises(ValueError, match='position 1'): rating_metrics([1, 2], [1, np.nan])


# ---- ranking
def test_ndcg_hand_values():
    assert ndcg_at_k([1], 10)[0] == 1.0
    assert ndcg_at_k([3], 10)[0] == pytest.approx(1 / math.log2(4)) == pytest.approx(0.5)
    assert ndcg_at_k([2], 10)[0] == pytest.approx(1 / math.log2(3))
    assert ndcg_at_k([10], 10)[0] == pytest.approx(1 / math.log2(11)) and ndcg_at_k([11], 10)[0] == 0

def test_k_edges():
    r = [1, 2, 5, np.inf]
    assert hit_at_k(r, 1).tolist() == [1, 0, 0, 0] and ndcg_at_k(r, 1).tolist() == [1, 0, 0, 0]
    assert hit_at_k(r, 5).tolist() == [1, 1, 1, 0]              # rank == k counts
    assert hit_at_k(r, 10 ** 6).tolist() == [1, 1, 1, 0]        # k beyond every list: inf still misses
    for k in (0, -1, 2.5, True, None):
        with pytest.raises(ValueError, match='k must be'): hit_at_k(r, k)
    with pytest.raises(ValueError, match='1-based'): ndcg_at_k([0], 5)
    with pytest.raises(ValueError, match='1-based'): ndcg_at_k([np.nan], 5)
    with pytest.raises(ValueError, match='no users'): ranking_metrics([])

def test_ranking_metrics_means():
    m = ranking_metrics([1, 3, 11, np.inf], ks=(1, 5, 10))
    assert (m['HR@1'], m['HR@5'], m['HR@10'], m['n']) == (0.25, 0.5, 0.5, 4)
    assert m['NDCG@10'] == pytest.approx((1 + 0.5) / 4) and m['NDCG@1'] == m['HR@1']
    assert m['mean_rank'] == pytest.approx(5.0)

def test_rank_in_list():
    assert rank_in_list([['a', 'b', 'c'], ['c'], [], ['b', 'b']], ['c', 'c', 'c', 'b']).tolist() == [3, 1, np.inf, 1]
    assert rank_in_list(np.array([[3, 1, 2], [2, 2, 1]]), [2, 9]).tolist() == [3, np.inf]
    with pytest.raises(ValueError, match='2 ranked lists but 1'): rank_in_list([['a'], ['b']], ['a'])

def test_rank_from_scores_ties_and_exclude():
    s = np.array([[0.9, 0.5, 0.7, 0.5]])
    assert rank_from_scores(s, [1], ties='pessimistic')[0] == 4 and rank_from_scores(s, [1], ties='optimistic')[0] == 3
    ex = np.array([[True, True, False, False]])     # the target's own column stays in even when marked
    assert rank_from_scores(s, [1], ex, ties='pessimistic')[0] == 3
    assert rank_from_scores(s, [0])[0] == 1
    r = rank_from_scores(np.zeros((4000, 10)), np.zeros(4000, int), seed=3)   # random tie-break: uniform over 1..10
    assert set(r) == set(range(1, 11)) and abs(r.mean() - 5.5) < 0.2
    assert (r == rank_from_scores(np.zeros((4000, 10)), np.zeros(4000, int), seed=3)).all()
    with pytest.raises(ValueError, match='NaN at row 0, column 1'): rank_from_scores(np.array([[1.0, np.nan]]), [0])
    with pytest.raises(ValueError, match='out of range'): rank_from_scores(s, [4])
    with pytest.raises(ValueError, match='ties must be'): rank_from_scores(s, [0], ties='mean')

def test_rank_from_scores_vectorized_matches_loop():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, (50, 30)).astype(float); t = rng.integers(0, 30, 50)
    ex = rng.random((50, 30)) < 0.3
    got = rank_from_scores(s, t, ex, ties='pessimistic')
    for i in range(50):
        keep = ~ex[i]; keep[t[i]] = False
        assert got[i] == 1 + (s[i][keep] >= s[i, t[i]]).sum()


# ---- the one rule for history items
def test_rank_excluding_history_by_hand():
    s = np.array([[0.9, 0.8, 0.5, 0.1]] * 3); cols = ['a', 'b', 'c', 'd']
    t, h = ['c', 'a', 'd'], [['a'], ['a'], []]
    want = [2.0, np.inf, 4.0]   # 'a' left out; a repeated target is a miss though it scores highest; no history: plain
    assert rank_excluding_history(t, h, s, cols).tolist() == want
    assert rank_excluding_history(t, h, s, [cols] * 3).tolist() == want                      # per-row columns
    assert rank_excluding_history(t, h, ranked=[cols] * 3).tolist() == want                  # a ranked list
    assert rank_excluding_history(t, h, ranked=[['b', 'c'], ['a'], []]).tolist() == [2.0, np.inf, np.inf]
    assert repeated_targets(t, h).tolist() == [False, True, False]
    # per-row columns in another order, the history partly outside the columns
    assert rank_excluding_history(['c'], [['zz', 'b']], s[:1], [['b', 'c', 'a', 'd']]).tolist() == [1.0]   # b (0.9) left out

def test_rank_excluding_history_matches_mask_and_ties():
    "Random data: the rule equals rank_from_scores with the history mask, and a repeated target is always inf."
    rng = np.random.default_rng(0)
    n, c = 200, 40
    cols = [f'i{k}' for k in range(c)]
    s = rng.integers(0, 4, (n, c)).astype(float)
    t = rng.integers(0, c, n)
    h = [list(rng.choice(c, rng.integers(0, 8), replace=False)) for _ in range(n)]
    ex = np.zeros((n, c), bool)
    for i, x in enumerate(h): ex[i, x] = True
    rep = np.array([t[i] in h[i] for i in range(n)])
    want = rank_from_scores(s, t, ex, seed=3); want[rep] = np.inf
    got = rank_excluding_history([cols[k] for k in t], [[cols[k] for k in x] for x in h], s, cols, seed=3)
    assert rep.any() and np.array_equal(got, want)
    per_row = rank_excluding_history([cols[k] for k in t], [[cols[k] for k in x] for x in h], s, [cols] * n, seed=3)
    assert np.array_equal(per_row, want)

def test_rank_excluding_history_errors():
    s = np.zeros((1, 2))
    with pytest.raises(ValueError, match="target 'x' of row 0 is not a column"): rank_excluding_history(['x'], [[]], s, ['a', 'b'])
    with pytest.raises(ValueError, match='give scores'): rank_excluding_history(['a'], [[]])
    with pytest.raises(ValueError, match='do not match'): rank_excluding_history(['a'], [[]], s, ['a', 'b', 'c'])
    with pytest.raises(ValueError, match='1 targets but 2 histories'): repeated_targets(['a'], [[], []])

def test_repeat_fixture_is_its_generator(tmp_path):
    "The committed fixture is exactly what its make_fixture.py writes."
    spec = importlib.util.spec_from_file_location('make_fixture', REPEATS / 'make_fixture.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    mod.write(tmp_path)
    for f in ('sequences.jsonl', 'items.json'): assert (tmp_path / f).read_bytes() == (REPEATS / f).read_bytes(), f


# ---- text
def test_bleu_hand_cases():
    s = 'the cat sat on the mat'
    b = bleu([s], [s])
    assert b[BLEU] == pytest.approx(100.0) and b['n'] == 1 and b['version'].startswith('sacrebleu ')
    assert bleu([s], [s + ' today'])[BLEU] == pytest.approx(100 * math.exp(1 - 7 / 6))   # brevity penalty only
    assert bleu(['completely different words here'], [s])[BLEU] == 0.0
    assert bleu([s], [['nothing alike at all', s]])[BLEU] == pytest.approx(100.0)      # several references
    with pytest.raises(ValueError, match='2 hypotheses but 1'): bleu(['a', 'b'], ['a'])

def test_rouge_hand_case():
    r = rouge(['the cat sat on the mat'], ['the cat is on the mat'])
    assert r[R1] == pytest.approx(100 * 5 / 6) and r[R2] == pytest.approx(100 * 3 / 5) and r[RL] == pytest.approx(100 * 5 / 6)
    assert r['version'].startswith('rouge-score ')
    r = rouge(['a b', 'x y'], ['a b', 'p q'])      # mean over examples: (100 + 0) / 2
    assert r[R1] == pytest.approx(50.0)
    p = rouge(['the cat'], ['the cat sat'], prf=True)   # precision 1, recall 2/3
    assert p['ROUGE-1 P (rouge-score, x100)'] == pytest.approx(100.0) and p['ROUGE-1 R (rouge-score, x100)'] == pytest.approx(200 / 3)

def test_text_metrics_keys_name_implementation():
    m = text_metrics(['a good movie'], ['a good movie'])
    assert set(k for k in m if 'x100' in k) == {BLEU, R1, R2, RL}
    assert 'sacrebleu' in m['version'] and 'rouge-score' in m['version']
