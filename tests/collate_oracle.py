"""The test oracle of `recsysllm_nb.collate.RecCollator`: a plain per-sample, per-token implementation of its batch.

It shares only the random draws with the package (`masking.draw_spans`: objective, spans, Part B order); truncation
(whole units from the newest end), Part A / Part B (a walk over the tokens), trimming (every unit start of Part A from
the left), both intra rules and the padding are written here again, as loops, so a comparison with the batched
collator can fail.
"""
import numpy as np
import torch

from recsysllm_nb.entities import TokenizedSample
from recsysllm_nb.tokenizer import SpecialIds
from recsysllm_nb.masking import MaskConfig, MaskedSample, draw_spans
from recsysllm_nb.collate import as_example, cut_left


def _units_loop(entity: list) -> list:
    "Units as [start, end) pairs, by a plain loop: a run of one entity index >= 0, or one plain token."
    units = []
    for t, e in enumerate(entity):
        if t > 0 and e >= 0 and e == entity[t - 1]: units[-1][1] = t + 1
        else: units.append([t, t + 1])
    return units


def _truncate_loop(ts: TokenizedSample, budget: int, entity_aware: bool = True) -> TokenizedSample:
    "Oracle truncation: add whole units from the newest end while they fit."
    n = len(ts.input_ids)
    if n <= budget: return ts
    cut, kept = n, 0
    for s, e in reversed(_units_loop(ts.entity.tolist() if entity_aware else [-1] * n)):
        if kept + (e - s) > budget: break
        kept, cut = kept + (e - s), s
    if cut == n: raise ValueError(f'the last unit is longer than the budget of {budget} tokens')
    return cut_left(ts, cut)


def _mask_loop(ts: TokenizedSample, spans, level: str, ids: SpecialIds, order=None,
               entity_aware: bool = True) -> MaskedSample:
    "Oracle Part A / Part B: walk the tokens, each span becomes one mask token; then the spans, in `order`."
    tokens = ts.input_ids.tolist(); n = len(tokens)
    ent = ts.entity.tolist() if entity_aware else [-1] * n
    mask_id = {'entity': ids.mask, 'sentence': ids.smask, 'document': ids.gmask}[level]
    spans = [(int(s), int(e)) for s, e in spans]
    part_a, a_ent, where = [], [], []
    t, j = 0, 0
    while t < n:
        if j < len(spans) and t == spans[j][0]:
            where.append(len(part_a)); part_a.append(mask_id); a_ent.append(-1); t = spans[j][1]; j += 1
        else:
            part_a.append(tokens[t]); a_ent.append(ent[t]); t += 1
    assert j == len(spans), 'spans must be sorted, non-overlapping and inside the text'
    b_in, b_out, b_span, b_ent, mask_pos, kept = [], [], [], [], [], []
    for k, j in enumerate(range(len(spans)) if order is None else [int(o) for o in order]):
        s, e = spans[j]
        b_in += [ids.sop] + tokens[s:e]; b_out += tokens[s:e] + [ids.eop]
        b_span += [k] * (e - s + 1); b_ent += [-1] + ent[s:e]
        mask_pos.append(where[j]); kept.append([s, e])
    return MaskedSample(part_a=np.array(part_a, np.int64), a_entity=np.array(a_ent, np.int32),
                        mask_pos=np.array(mask_pos, np.int64), spans=np.array(kept, np.int64).reshape(-1, 2),
                        part_b_in=np.array(b_in, np.int64), part_b_out=np.array(b_out, np.int64),
                        b_span=np.array(b_span, np.int64), b_entity=np.array(b_ent, np.int32), level=level)


def _trim_loop(ms: MaskedSample, max_length: int) -> MaskedSample:
    "Oracle trim: try every unit start of Part A from the left; keep the first cut whose sample fits."
    la, lb = len(ms.part_a), len(ms.part_b_in)
    if la + lb <= max_length: return ms
    for c, _ in _units_loop(ms.a_entity.tolist()):
        kept = {s for s in range(len(ms.mask_pos)) if ms.mask_pos[s] >= c}
        b_keep = [t for t in range(lb) if int(ms.b_span[t]) in kept]
        if (la - c) + len(b_keep) <= max_length: break
    else: raise ValueError(f'no cut brings {la}+{lb} tokens under {max_length}')
    order = sorted(kept)
    new = {s: k for k, s in enumerate(order)}
    cut_orig = c + sum(int(ms.spans[s, 1] - ms.spans[s, 0]) - 1 for s in range(len(ms.mask_pos)) if s not in kept)
    return MaskedSample(part_a=ms.part_a[c:], a_entity=ms.a_entity[c:],
                        mask_pos=np.array([ms.mask_pos[s] - c for s in order], np.int64),
                        spans=np.array([ms.spans[s] - cut_orig for s in order], np.int64).reshape(-1, 2),
                        part_b_in=ms.part_b_in[b_keep], part_b_out=ms.part_b_out[b_keep],
                        b_span=np.array([new[int(ms.b_span[t])] for t in b_keep], np.int64),
                        b_entity=ms.b_entity[b_keep], level=ms.level)


def collate_oracle(examples: list,            # as for `RecCollator`
                   ids: SpecialIds,           # special token ids
                   mask_config: MaskConfig,   # masking configuration
                   max_length: int = 512, seed: int = 0, epoch: int = 0, pad_to_multiple_of: int = 8,
                   block_ids: bool | None = None    # GLM block ids instead of entity intra ids (default: not entity-aware)
                  ) -> dict:
    "The test oracle: a plain per-sample, per-token implementation of what `RecCollator` returns (same tensors)."
    ea = mask_config.entity_aware
    block_ids = (not ea) if block_ids is None else block_ids
    rows = []
    for k, ex in enumerate(examples):
        ts, idx = as_example(ex, k)
        ts = _truncate_loop(ts, max_length - 2, ea)
        level, spans, order = draw_spans(ts, mask_config, np.random.default_rng([seed, idx, epoch]))
        ms = _trim_loop(_mask_loop(ts, spans, level, ids, order if mask_config.shuffle else None, ea), max_length)
        la, lb = len(ms.part_a), len(ms.part_b_in)
        a_e, b_e, b_s = ms.a_entity.tolist(), ms.b_entity.tolist(), ms.b_span.tolist()
        intra = []
        for t in range(la):                              # Part A: 0 outside entities, 1..n along an entity
            if block_ids or a_e[t] < 0: intra.append(0)
            elif t > 0 and a_e[t] == a_e[t - 1]: intra.append(intra[-1] + 1)
            else: intra.append(1)
        is_sop = [t == 0 or b_s[t] != b_s[t - 1] for t in range(lb)]   # each span opens with [sop]
        for t in range(lb):                              # Part B
            if is_sop[t]: intra.append(1)                                     # [sop] -> 1
            elif block_ids or is_sop[t - 1]: intra.append(intra[-1] + 1)            # right after [sop] -> 2 (GLM: always +1)
            elif b_e[t] >= 0 and b_e[t] == b_e[t - 1]: intra.append(intra[-1] + 1)  # continues the entity -> +1
            else: intra.append(1)                                             # anything else restarts
        rows.append(dict(ids=ms.part_a.tolist() + ms.part_b_in.tolist(),
                         inter=list(range(la)) + [int(ms.mask_pos[s]) for s in b_s], intra=intra,
                         labels=[-100] * la + ms.part_b_out.tolist(), la=la))
    longest = max(len(r['ids']) for r in rows)
    L = max(-(-longest // pad_to_multiple_of) * pad_to_multiple_of, pad_to_multiple_of)
    pad = lambda x, v: x + [v] * (L - len(x))
    return dict(input_ids=torch.tensor([pad(r['ids'], ids.pad) for r in rows], dtype=torch.long),
                position_ids=torch.tensor([[pad(r['inter'], 0), pad(r['intra'], 0)] for r in rows], dtype=torch.long),
                attention_mask=torch.tensor([pad([1] * len(r['ids']), 0) for r in rows], dtype=torch.long),
                prefix_len=torch.tensor([r['la'] for r in rows], dtype=torch.long),
                labels=torch.tensor([pad(r['labels'], -100) for r in rows], dtype=torch.long))
