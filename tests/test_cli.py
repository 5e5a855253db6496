"""recsysllm_nb.cli: every installed console script turns a bad input into one line `error: ...` and exit status 2."""
import configparser, os, re, subprocess, sys, time
from pathlib import Path
import pytest
from recsysllm_nb import cli

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ITEMS = 'item_id,title,genre\nm1,Alpha,drama\nm2,,comedy\nm3,Gamma,drama\n'   # line 3: an empty title
INTER = 'user_id,item_id,rating,timestamp\nu1,m1,4,100\nu1,m3,5,200\nu2,m1,3,150\n'

# one bad input per console script: (arguments, a part of the expected message); {tmp} is the test's folder, {bad} a
# tables folder whose items.csv has an empty title. A new script in cli.SCRIPTS needs a line here.
EMPTY_TITLE = "items.csv, line 3, column 'title': expected a non-empty title, got ''"
CASES = {
    'recsysllm_data': (['--dataset', 'tables:{bad}'], EMPTY_TITLE),                              # DataError
    'recsysllm_demo': (['--steps', 'many'], "argument --steps: invalid int value: 'many'"),     # argparse
    'recsysllm_train': (['--resume', '{tmp}/no-checkpoint', '--output_dir', '{tmp}/run'],      # FileNotFoundError
                        'no-checkpoint is not a checkpoint'),
    'recsysllm_recommend': ([], 'the following arguments are required: user'),                   # argparse
    'recsysllm_eval': (['--dataset', 'tables:{tmp}/missing', '--out', '{tmp}/eval'],           # DataError: no table
                       'missing/items.csv'),
    'recsysllm_beauty': (['{tmp}/missing'], '{tmp}/missing'),                                    # missing folder
    'recsysllm_bench': (['{tmp}/missing', '--out', '{tmp}/bench'], '{tmp}/missing'),             # missing folder
    'recsysllm_ablations': (['--n_users', 'all', '--out', '{tmp}/ablations'],                    # argparse
                            "argument --n_users: invalid int value: 'all'"),
    'recsysllm_headline': (['--arms', 'nope', '--out', '{tmp}/headline'], "unknown arm(s) ['nope']"),    # ValueError
}

def _env(**kw):
    env = {k: v for k, v in os.environ.items() if k != cli.DEBUG_ENV}
    return dict(env, CUDA_VISIBLE_DEVICES='', HF_HUB_OFFLINE='1', TOKENIZERS_PARALLELISM='false', **kw)

def _bad_tables(d):
    d.mkdir(); (d / 'items.csv').write_text(ITEMS); (d / 'interactions.csv').write_text(INTER)
    return d

@pytest.fixture(scope='module')
def failures(tmp_path_factory):
    "Every script run once on its bad input, all at once (most import torch), each in its own empty folder."
    root = tmp_path_factory.mktemp('cli')
    bad = _bad_tables(root / 'bad')
    procs = {}
    for name, (args, _) in CASES.items():
        tmp = root / name; tmp.mkdir()
        argv = [a.format(tmp=tmp, bad=bad) for a in args]
        p = subprocess.Popen([str(BIN / name), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=tmp, env=_env())
        procs[name] = (tmp, time.time(), p)
    res = {}
    for name, (tmp, t0, p) in procs.items():
        out, err = p.communicate(timeout=300)
        res[name] = (tmp, p.returncode, out, err, time.time() - t0)
    print('seconds: ' + ', '.join(f'{n} {r[-1]:.1f}' for n, r in res.items()))
    return res

def test_every_script_has_a_case():
    assert set(CASES) == set(cli.SCRIPTS), 'add a bad input for each console script to CASES'

@pytest.mark.parametrize('name', list(CASES))
def test_bad_input_is_one_line(failures, name):
    tmp, code, out, err, _ = failures[name]
    assert code == 2, (code, err[-3000:])
    assert 'Traceback' not in err, err[-3000:]
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), err[-3000:]
    assert CASES[name][1].format(tmp=tmp) in lines[0], lines[0]
    assert not any(tmp.iterdir()), sorted(tmp.iterdir())   # nothing written on the way out

def _data(*args, **env):
    return subprocess.run([str(BIN / 'recsysllm_data'), *map(str, args)], capture_output=True, text=True,
                          env=_env(**env))

def test_debug_shows_the_traceback(tmp_path):
    bad = _bad_tables(tmp_path / 'bad')
    for r in (_data('--dataset', f'tables:{bad}', '--debug'), _data('--dataset', f'tables:{bad}', RECSYSLLM_DEBUG='1')):
        lines = r.stderr.splitlines()
        assert r.returncode == 2 and lines[0] == 'Traceback (most recent call last):', r.stderr[-3000:]
        assert 'recsysllm_nb.data.DataError' in r.stderr
        assert lines[-1] == f'error: {bad}/{EMPTY_TITLE}'
    r = _data('--dataset', f'tables:{bad}', RECSYSLLM_DEBUG='0')
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1

def test_good_input_and_help_unchanged(tmp_path):
    d = tmp_path / 'good'; d.mkdir()
    (d / 'items.csv').write_text(ITEMS.replace('m2,,', 'm2,Beta,')); (d / 'interactions.csv').write_text(INTER)
    r = _data('--dataset', f'tables:{d}')
    assert r.returncode == 0 and r.stderr == '', r.stderr[-3000:]
    assert '"interactions": 3' in r.stdout.splitlines()[-1]
    r = _data('--help')
    assert r.returncode == 0 and r.stdout.startswith('usage: recsysllm_data')
    assert '--dataset' in r.stdout and '--debug' in r.stdout

def test_settings_console_scripts_go_through_cli():
    ini = configparser.ConfigParser(delimiters=['=']); ini.read(ROOT / 'settings.ini')
    assert ini['DEFAULT']['console_scripts'] == cli.console_scripts(), \
        'settings.ini console_scripts must be recsysllm_nb.cli.console_scripts() (add the script to cli.SCRIPTS)'
    for name, module in cli.SCRIPTS.items():
        assert (BIN / name).exists(), f'{name} is not installed: run pip install --no-deps -e .'
        assert f'from recsysllm_nb.cli import {name}' in (BIN / name).read_text(), f'{name}: run pip install -e . again'
        src = (ROOT / 'recsysllm_nb' / f'{module}.py').read_text()
        assert re.search(rf'^def {name}\(', src, re.M), f'recsysllm_nb/{module}.py defines no {name}'

def test_every_call_parse_function_is_a_script():
    "A command written with @call_parse in any module is reachable as a console script through cli."
    found = {m.group(1) for f in (ROOT / 'recsysllm_nb').glob('*.py')
             for m in re.finditer(r'^@call_parse\s*\ndef (\w+)\(', f.read_text(), re.M)}
    assert found <= set(cli.SCRIPTS), f'not console scripts: {sorted(found - set(cli.SCRIPTS))}'

def test_import_is_cheap():
    heavy = ('torch', 'pandas', 'transformers', 'numpy', 'recsysllm_nb.data')
    code = f'import sys, recsysllm_nb.cli; print(sorted(m for m in {heavy} if m in sys.modules))'
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == '[]', (r.stdout, r.stderr)   # the scripts' modules load when run
