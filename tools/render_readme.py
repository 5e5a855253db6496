"""Render README.md from nbs/index.ipynb (quarto, which nbdev_readme needs, is not available here).

Cells marked `#| hide` are dropped, other `#|` directive lines are removed, and the result goes through
nbconvert's markdown exporter. `--check` exits 1 when README.md differs from what would be written."""
import sys
from pathlib import Path
import nbformat
from nbconvert import MarkdownExporter

ROOT = Path(__file__).resolve().parents[1]

def render(root: Path = ROOT) -> str:
    nb = nbformat.read(root / 'nbs' / 'index.ipynb', as_version=4)
    cells = []
    for cell in nb.cells:
        lines = cell.source.splitlines()
        if any(l.strip().replace(' ', '') in ('#|hide', '#|hide_input') for l in lines): continue
        cell.source = '\n'.join(l for l in lines if not l.lstrip().startswith('#|')).strip('\n')
        if cell.cell_type == 'code': cell.outputs = []
        cells.append(cell)
    nb.cells = cells
    body, _ = MarkdownExporter().from_notebook_node(nb)
    return body.strip() + '\n'

if __name__ == '__main__':
    text, path = render(), ROOT / 'README.md'
    if '--check' in sys.argv:
        same = path.exists() and path.read_text(encoding='utf-8') == text
        print('README.md is in sync with nbs/index.ipynb' if same else 'README.md differs from nbs/index.ipynb: run `python tools/render_readme.py`')
        sys.exit(0 if same else 1)
    path.write_text(text, encoding='utf-8')
    print(f'wrote {path}')
