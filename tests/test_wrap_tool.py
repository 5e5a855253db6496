"tools/wrap_long_lines.py: long lines wrapped, the code's AST and its parameters' docments unchanged."
import ast, importlib.util
from pathlib import Path
from fastcore.docments import docments

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location('wrap_long_lines', ROOT / 'tools' / 'wrap_long_lines.py')
wrap = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(wrap)

CELL = '''#| export
def score(users, items, history=None,
          weights=None,   # per-item weights applied to the scores before ranking; None means every item weighs the same one
          k: int = 10):
    "Score every item for every user and keep the best k of them, with the items each user has already had left out of it."
    if history is not None and len(history) > 0 and len(users) > 0: raise ValueError(f'history must be empty here, got {len(history)} rows')
    out = dict(users=users, items=items, history=history, weights=weights, k=k, description='a long value that goes on')
    return out
'''

def _load(src, path):
    "The cell as a module from a file (docments reads the source)."
    path.write_text(src.replace('#| export\n', ''))
    spec = importlib.util.spec_from_file_location(path.stem, path); m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m); return m

def test_wraps_without_changing_the_code(tmp_path):
    new = wrap.fix_cell(CELL)
    assert max(map(len, new.splitlines())) <= 120, new
    assert max(map(len, CELL.splitlines())) > 120
    assert ast.dump(ast.parse(new)) == ast.dump(ast.parse(CELL))
    old_f, new_f = _load(CELL, tmp_path / 'before.py').score, _load(new, tmp_path / 'after.py').score
    assert new_f.__doc__ == old_f.__doc__
    d_old, d_new = docments(old_f), docments(new_f)
    assert d_new['weights'].split() == d_old['weights'].split() and d_old['weights']   # the comment stays the docment

def test_leaves_what_it_cannot_wrap():
    cell = '#| export\nURL = "' + 'x' * 130 + '"\n'
    assert wrap.fix_cell(cell) == cell
