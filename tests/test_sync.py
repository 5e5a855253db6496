"""Notebooks are clean, the package is exported from them, and README.md is rendered from nbs/index.ipynb.
Checked on a scratch copy so the working tree is never touched by the test."""
import shutil, subprocess, sys, os, filecmp
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

def _copy(tmp):
    dst = tmp / 'repo'
    shutil.copytree(ROOT, dst, ignore=shutil.ignore_patterns('.venv', '.git', '__pycache__', '*.egg-info', '.pytest_cache',
                                                             '.hypothesis', 'runs', 'reports', '_proc', '_docs', 'build', 'dist'))
    return dst

def _diff(a: Path, b: Path, pattern):
    files = sorted({p.relative_to(a) for p in a.glob(pattern)} | {p.relative_to(b) for p in b.glob(pattern)})
    return [str(f) for f in files if not ((a / f).exists() and (b / f).exists() and filecmp.cmp(a / f, b / f, shallow=False))]

def test_nbdev_clean_leaves_no_diff(tmp_path):
    dst = _copy(tmp_path)
    subprocess.run([str(BIN / 'nbdev_clean')], cwd=dst, check=True, capture_output=True)
    changed = _diff(ROOT, dst, 'nbs/**/*.ipynb')
    assert not changed, f'nbdev_clean changes {changed}: run `make export` and commit'

def test_nbdev_export_leaves_no_diff(tmp_path):
    dst = _copy(tmp_path)
    subprocess.run([str(BIN / 'nbdev_export')], cwd=dst, check=True, capture_output=True)
    changed = _diff(ROOT, dst, 'recsysllm_nb/*.py')
    assert not changed, f'nbdev_export changes {changed}: run `make export` and commit'

def test_readme_rendered_from_index():
    res = subprocess.run([sys.executable, str(ROOT / 'tools' / 'render_readme.py'), '--check'], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
