"""Shared pytest options: `--run-slow` / `--run-cuda` also run notebook cells flagged `#| slow` / `#| cuda`."""
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

def pytest_addoption(parser):
    parser.addoption('--run-slow', action='store_true', help='also run notebook cells flagged #| slow and slow tests')
    parser.addoption('--run-cuda', action='store_true', help='also run notebook cells flagged #| cuda (needs a GPU)')

def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: runs only with --run-slow')

def pytest_collection_modifyitems(config, items):
    if config.getoption('--run-slow'): return
    skip = pytest.mark.skip(reason='slow: pass --run-slow')
    for item in items:
        if 'slow' in item.keywords: item.add_marker(skip)

@pytest.fixture
def nb_flags(request):
    return [f for f, opt in (('slow', '--run-slow'), ('cuda', '--run-cuda')) if request.config.getoption(opt)]

@pytest.fixture(scope='session')
def root(): return ROOT
