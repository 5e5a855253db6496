"""Writes the repeat fixture beside this file: 12 made-up users in the sequences format (sequences.jsonl + items.json)
whose histories repeat items, as Amazon data keeps repeat purchases. Run `python make_fixture.py`; the same bytes every time.

Per user (time order; the last item is the test item, the one before it the validation item):
- U00..U03: the test item is an item bought earlier in training (a repeat purchase);
- U04: the test item repeats the validation item (bought twice in a row);
- U05: the validation item repeats a training item, the test item is new;
- U06: a training item appears twice, validation and test are new;
- U07..U11: no repeats.
So 5 of the 12 test items repeat an item of the user's history (train + validation). 120 items, 10 per user, so
99 negatives (never touched) can always be drawn.
"""
import json
from pathlib import Path

BRANDS = ['Lumina', 'Koru', 'Solace', 'Amberline', 'Verde', 'Nordic']
PRODUCTS = ['Lip Balm', 'Face Serum', 'Night Cream', 'Shampoo', 'Nail Polish']
VARIANTS = ['Rose', 'Mint', 'Vanilla', 'Citrus']


def items() -> dict:
    "R000..R119 -> title and category path; every title distinct."
    out = {}
    for k in range(120):
        b, rest = divmod(k, len(PRODUCTS) * len(VARIANTS))
        p, v = divmod(rest, len(VARIANTS))
        out[f'R{k:03d}'] = {'title': f'{BRANDS[b]} {PRODUCTS[p]}, {VARIANTS[v]}', 'categories': [['Beauty', PRODUCTS[p]]]}
    return out


def sequences() -> list:
    "One dict per user: id, item ids in time order, gaps in seconds (one day apart)."
    seqs = []
    for u in range(12):
        base = [f"R{u * 10 + j:03d}" for j in range(10)]           # 10 distinct items: the user's own block
        if u <= 3: s = base + [base[2]]                            # test repeats a training item
        elif u == 4: s = base + [base[-1]]                         # test repeats the validation item
        elif u == 5: s = base[:9] + [base[1], base[9]]             # validation repeats a training item
        elif u == 6: s = base[:3] + [base[1]] + base[3:]           # a training item twice
        else: s = base
        seqs.append({'user': f'U{u:02d}', 'items': s, 'delta_sec': [0] + [86400] * (len(s) - 1)})
    return seqs


def write(folder=Path(__file__).resolve().parent):
    folder = Path(folder)
    (folder / 'sequences.jsonl').write_text(''.join(json.dumps(s) + '\n' for s in sequences()), encoding='utf-8')
    body = ',\n'.join(f'{json.dumps(k)}: {json.dumps(v)}' for k, v in items().items())
    (folder / 'items.json').write_text('{\n' + body + '\n}\n', encoding='utf-8')
    return folder


if __name__ == '__main__':
    print(write())
