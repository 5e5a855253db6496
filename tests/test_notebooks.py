"""Every notebook runs top to bottom (nbdev_test), in its own process; `#| slow` / `#| cuda` cells only when asked."""
import subprocess, sys, os
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / 'nbs').rglob('*.ipynb')
                   if '.ipynb_checkpoints' not in p.parts and not p.name.startswith('_'))

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[str(p.relative_to(ROOT / 'nbs')) for p in NOTEBOOKS])
def test_notebook_runs(nb, nb_flags):
    cmd = [str(Path(sys.executable).parent / 'nbdev_test'), '--path', str(nb), '--n_workers', '0', '--do_print']
    if nb_flags: cmd += ['--flags', ' '.join(nb_flags)]
    env = dict(os.environ, MPLBACKEND='Agg', TOKENIZERS_PARALLELISM='false', HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1')
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=1800)
    assert res.returncode == 0, f'{nb.name} failed:\n{res.stdout[-6000:]}\n{res.stderr[-6000:]}'
