"""Properties of recsysllm_nb.collate on random texts and entity layouts: fast collator == oracle, positions and labels
follow the rules, padding is never attended, determinism across batch order and DataLoader workers."""
import numpy as np
import torch
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from recsysllm_nb.entities import TokenizedSample
from recsysllm_nb.tokenizer import SpecialIds
from recsysllm_nb.masking import MaskConfig, reconstruct
from recsysllm_nb.positions import prefix_lm_mask
from recsysllm_nb.collate import RecCollator, RecDataset, truncate_left, trim_spans, sample_rng
from recsysllm_nb.train import EpochCallback
import recsysllm_nb.collate
from collate_oracle import collate_oracle, _truncate_loop     # tests/collate_oracle.py: the plain-loop oracle

IDS = SpecialIds(mask=1, smask=2, gmask=3, sop=4, eop=5, pad=0, eos=6)
VOCAB0 = 10                                              # ordinary token ids start here
CONFIGS = dict(entity=MaskConfig(level_probs=(1, 0, 0)), mixture=MaskConfig(), sentence=MaskConfig(level_probs=(0, 1, 0)),
               document=MaskConfig(level_probs=(0, 0, 1)), glm=MaskConfig.glm(), shuffled=MaskConfig(shuffle=True))

def make_sample(rng, n_units, p_ent=0.5):
    "A random text: units (entities of 1-6 tokens or plain tokens) grouped into sentences at unit boundaries."
    size = np.where(rng.random(n_units) < p_ent, rng.integers(1, 7, n_units), 0)   # 0 = plain token
    ent_of_unit = np.where(size > 0, np.cumsum(size > 0) - 1, -1)
    entity = np.repeat(ent_of_unit, np.maximum(size, 1)).astype(np.int32)
    sent_of_unit = np.cumsum(rng.random(n_units) < 0.15)                           # sentences start on units
    sentence = np.repeat(sent_of_unit - sent_of_unit[0], np.maximum(size, 1)).astype(np.int32)
    return TokenizedSample(rng.integers(VOCAB0, 500, len(entity)).astype(np.int64), entity, sentence)

@st.composite
def samples(draw, max_units=120):
    "Random texts and entity layouts (hypothesis picks the size, the entity share and the seed of the rest)."
    n_units = draw(st.integers(1, max_units))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    return make_sample(rng, n_units, draw(st.sampled_from([0.0, 0.3, 0.7, 1.0])))

def as_dicts(ss, first=0):
    return [dict(input_ids=s.input_ids, entity=s.entity, sentence=s.sentence, idx=first + i) for i, s in enumerate(ss)]

def loop_intra_b(ent, span):
    out = []
    for t in range(len(ent)):
        if t == 0 or span[t] != span[t - 1]: out.append(1)
        elif t == 1 or span[t - 1] != span[t - 2]: out.append(2)
        elif ent[t] >= 0 and ent[t] == ent[t - 1]: out.append(out[-1] + 1)
        else: out.append(1)
    return out

def check_batch(batch, masked, ts_list, max_length, block_ids=False):
    ids, pos, am, pl, lab = (batch[k].numpy() for k in ('input_ids', 'position_ids', 'attention_mask', 'prefix_len', 'labels'))
    b, L = ids.shape
    assert L % 8 == 0 and pos.shape == (b, 2, L) and lab.shape == (b, L)
    for k, (m, ts) in enumerate(zip(masked, ts_list)):
        la, lb = len(m.part_a), len(m.part_b_in); v = la + lb
        assert v <= max_length and pl[k] == la and am[k].sum() == v and (am[k, :v] == 1).all()
        # the sample is a suffix of the original stream, cut at a unit boundary, rebuilt exactly from Part A + Part B
        orig = reconstruct(m); n = len(ts.input_ids); c = n - len(orig)
        assert (orig == ts.input_ids[c:]).all()
        assert block_ids or c == 0 or not (ts.entity[c] >= 0 and ts.entity[c] == ts.entity[c - 1])
        for s, e in ([] if block_ids else m.spans):                   # spans never split an entity (GLM knows none)
            if s > 0: assert not (ts.entity[c + s] >= 0 and ts.entity[c + s] == ts.entity[c + s - 1])
            if c + e < n: assert not (ts.entity[c + e] >= 0 and ts.entity[c + e] == ts.entity[c + e - 1])
        # Part B: every token's inter-position is its span's mask token, which holds a mask id
        assert (pos[k, 0, la:v] == m.mask_pos[m.b_span]).all()
        assert np.isin(ids[k, pos[k, 0, la:v]], [IDS.mask, IDS.smask, IDS.gmask]).all()
        assert (pos[k, 0, :la] == np.arange(la)).all()
        # labels: part_b_out under part_b_in, -100 elsewhere; inside a span label t is input t+1
        assert (lab[k, :la] == -100).all() and (lab[k, v:] == -100).all()
        assert (lab[k, la:v] == m.part_b_out).all() and (ids[k, la:v] == m.part_b_in).all()
        for j in range(len(m.mask_pos)):
            sel = la + np.flatnonzero(m.b_span == j)
            assert ids[k, sel[0]] == IDS.sop and lab[k, sel[-1]] == IDS.eop
            assert (lab[k, sel[:-1]] == ids[k, sel[1:]]).all()
        # intra ids follow the rule
        if block_ids:
            assert (pos[k, 1, :la] == 0).all()
        else:
            ent = m.a_entity
            exp = [0 if e < 0 else (1 if t == 0 or ent[t - 1] != e else None) for t, e in enumerate(ent)]
            for t in range(la):
                if exp[t] is None: exp[t] = exp[t - 1] + 1
            assert pos[k, 1, :la].tolist() == exp
            assert pos[k, 1, la:v].tolist() == loop_intra_b(m.b_entity.tolist(), m.b_span.tolist())
        assert (ids[k, v:] == IDS.pad).all() and (pos[k, :, v:] == 0).all()
    mask = prefix_lm_mask(batch['prefix_len'], batch['attention_mask'])[:, 0]
    real = batch['attention_mask'].bool()
    assert not (mask & real[:, :, None] & ~real[:, None, :]).any()   # padding never attended by real tokens
    assert mask.any(-1).all()

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(samples(), min_size=1, max_size=6), st.sampled_from(sorted(CONFIGS)), st.sampled_from([16, 40, 64, 512]),
       st.integers(0, 3), st.integers(0, 2))
def test_fast_equals_oracle_and_rules(ss, cfg_name, max_length, seed, epoch):
    cfg = CONFIGS[cfg_name]
    ex = as_dicts(ss, first=7)
    coll = RecCollator(IDS, cfg, max_length=max_length, seed=seed, epoch=epoch)
    fast = coll(ex)
    slow = collate_oracle(ex, IDS, cfg, max_length=max_length, seed=seed, epoch=epoch)
    assert fast.keys() == slow.keys()
    for k in slow: assert torch.equal(fast[k], slow[k]), k
    check_batch(fast, coll.mask(ex), ss, max_length, block_ids=not cfg.entity_aware)

def test_real_data_equals_oracle():
    "ML-100K users with long whole histories (truncated and trimmed) and short sampled ones, three masking settings."
    from recsysllm_nb.data import load_ml100k, leave_one_out
    from recsysllm_nb.textualize import textualize_corpus
    from recsysllm_nb.entities import tokenize_samples
    from recsysllm_nb.tokenizer import demo_tokenizer, special_ids
    tables = load_ml100k(); split = leave_one_out(tables); tok = demo_tokenizer(); ids = special_ids(tok)
    users = split.train['user_id'].value_counts().index[:6].tolist()
    ss = tokenize_samples(textualize_corpus(tables, split, users=users, n_items=None), tok)
    ss += tokenize_samples(textualize_corpus(tables, split, users=['1', '2']), tok)
    ex = as_dicts(ss)
    for cfg in (MaskConfig(level_probs=(1, 0, 0)), MaskConfig(), MaskConfig.glm(), MaskConfig(shuffle=True)):
        for ml in (512, 128):
            fast = RecCollator(ids, cfg, max_length=ml, seed=3, epoch=1)(ex)
            slow = collate_oracle(ex, ids, cfg, max_length=ml, seed=3, epoch=1)
            for k in slow: assert torch.equal(fast[k], slow[k]), (k, ml)
    long = ss[0]
    assert (_truncate_loop(long, 510).input_ids == truncate_left(long, 510).input_ids).all()

def test_oracle_catches_a_broken_part_b(monkeypatch):
    "The oracle builds Part A / Part B itself: a collator whose `apply_spans_batch` is wrong no longer matches it."
    ex = as_dicts([make_sample(np.random.default_rng(4), 80) for _ in range(3)])
    cfg = CONFIGS['mixture']
    labels = lambda: (RecCollator(IDS, cfg, max_length=64)(ex)['labels'],
                      collate_oracle(ex, IDS, cfg, max_length=64)['labels'])
    assert torch.equal(*labels())
    real = recsysllm_nb.collate.apply_spans_batch
    def broken(*a, **kw):                                  # every [eop] target becomes [sop]
        out = real(*a, **kw)
        for m in out: m.part_b_out[m.part_b_out == IDS.eop] = IDS.sop
        return out
    monkeypatch.setattr(recsysllm_nb.collate, 'apply_spans_batch', broken)
    assert not torch.equal(*labels())

@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(samples(), min_size=2, max_size=6), st.randoms(use_true_random=False))
def test_batch_order_and_composition_do_not_matter(ss, rnd):
    coll = RecCollator(IDS, CONFIGS['mixture'], max_length=64, seed=5)
    ex = as_dicts(ss)
    full = coll.mask(ex)
    perm = list(range(len(ex))); rnd.shuffle(perm)
    again = coll.mask([ex[i] for i in perm])
    for j, i in enumerate(perm):
        assert (again[j].part_a == full[i].part_a).all() and (again[j].part_b_out == full[i].part_b_out).all()
    alone = coll.mask([ex[perm[0]]])[0]
    assert (alone.part_b_in == full[perm[0]].part_b_in).all()

def test_truncate_and_trim_edges():
    ts = TokenizedSample(np.arange(10, 20), np.array([-1, 0, 0, 0, -1, 1, 1, 1, 1, -1], np.int32), np.zeros(10, np.int32))
    assert truncate_left(ts, 20) is ts
    assert truncate_left(ts, 6).input_ids.tolist() == [14, 15, 16, 17, 18, 19]        # cut before the entity ...
    assert truncate_left(ts, 5).input_ids.tolist() == [15, 16, 17, 18, 19]
    assert truncate_left(ts, 4).input_ids.tolist() == [19]                            # ... never inside it
    with pytest.raises(ValueError, match='longer than the budget'):
        truncate_left(TokenizedSample(np.arange(5), np.zeros(5, np.int32), np.zeros(5, np.int32)), 3)
    spans = np.array([[1, 4], [5, 9]])
    t2, s2, o2 = trim_spans(ts, spans, np.array([1, 0]), 12)                          # 10 + 4 > 12: drop the first span
    assert t2.input_ids.tolist() == [14, 15, 16, 17, 18, 19] and s2.tolist() == [[1, 5]] and o2.tolist() == [0]
    with pytest.raises(ValueError, match='>= 0'): sample_rng(0, -2, 0)
    with pytest.raises(ValueError, match='max_length'): RecCollator(IDS, max_length=2)
    with pytest.raises(KeyError, match="'idx'"): RecCollator(IDS)([dict(input_ids=[11, 12], entity=[-1, -1])])

_stream = make_sample

def test_dataloader_workers_give_identical_batches():
    rng = np.random.default_rng(0)
    ds = RecDataset([_stream(rng, int(n)) for n in rng.integers(20, 900, 20)])
    def run(workers, shuffle_seed=0):
        g = torch.Generator().manual_seed(shuffle_seed)
        dl = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=True, generator=g, num_workers=workers,
                                         collate_fn=RecCollator(IDS, MaskConfig(), max_length=512, seed=11))
        return list(dl)
    a, b = run(0), run(2)
    assert len(a) == len(b) == 5
    for x, y in zip(a, b):
        for k in x: assert torch.equal(x[k], y[k]), k

def test_epochs_differ_and_callback_sets_epoch():
    "A new epoch draws new masks; `train.EpochCallback` sets the collator's epoch (floored when resumed mid-epoch)."
    rng = np.random.default_rng(1)
    ex = as_dicts([_stream(rng, 300) for _ in range(4)])
    coll = RecCollator(IDS, MaskConfig(level_probs=(1, 0, 0)), seed=0)
    e0 = coll(ex); coll.set_epoch(1); e1 = coll(ex)
    assert not (e0['labels'].shape == e1['labels'].shape and torch.equal(e0['labels'], e1['labels']))
    cb = EpochCallback(coll)
    class S: epoch = 2.0
    cb.on_epoch_begin(None, S(), None)
    assert coll.epoch == 2
    S.epoch = 1.5                                          # a run resumed in the middle of epoch 1
    cb.on_epoch_begin(None, S(), None)
    assert coll.epoch == 1

def test_trainer_dataloader_with_workers():
    transformers = pytest.importorskip('transformers')
    rng = np.random.default_rng(2)
    ds = RecDataset([_stream(rng, int(n)) for n in rng.integers(50, 700, 16)])

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__(); self.emb = torch.nn.Embedding(500, 8); self.pos = torch.nn.Embedding(513, 8)
            self.out = torch.nn.Linear(8, 500)
        def forward(self, input_ids, position_ids, attention_mask, prefix_len, labels=None):
            h = self.emb(input_ids) + self.pos(position_ids[:, 0]) + self.pos(position_ids[:, 1])
            logits = self.out(h)
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
            return dict(loss=loss, logits=logits)

    def batches(workers, tmp):
        coll = RecCollator(IDS, MaskConfig(), max_length=512, seed=3)
        args = transformers.TrainingArguments(output_dir=str(tmp), per_device_train_batch_size=4, dataloader_num_workers=workers,
                                              remove_unused_columns=False, report_to=[], seed=0, use_cpu=True, max_steps=2)
        tr = transformers.Trainer(model=Tiny(), args=args, train_dataset=ds, data_collator=coll,
                                  callbacks=[EpochCallback(coll)])
        out = [{k: v.clone() for k, v in b.items()} for b in tr.get_train_dataloader()]
        tr.train()
        return out

    import tempfile
    with tempfile.TemporaryDirectory() as d:
        a, b = batches(0, d + '/a'), batches(2, d + '/b')
    assert len(a) == len(b) == 4
    for x, y in zip(a, b):
        for k in x: assert torch.equal(x[k], y[k]), k
