"""The built wheel works without the repository: it installs into a fresh virtual environment, the README's quick-start
snippet runs there from a temporary folder, and the console scripts exist and run.

The fresh environment does not see the repository or its editable install: the wheel is installed with `--no-deps`, and
the dependencies already installed in the test's own environment are made visible by one `.pth` line naming that
environment's site-packages. A path line in a `.pth` file only extends `sys.path`; the `.pth` files inside the named
folder (among them the editable install's import hook) are not run, so `recsysllm_nb` can only come from the wheel."""
import configparser, importlib.util, os, re, shutil, subprocess, sys, sysconfig, venv, zipfile
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD_FILES = ('setup.py', 'settings.ini', 'pyproject.toml', 'README.md', 'LICENSE', 'MANIFEST.in')


def readme_snippet() -> str:
    "The python code block of README.md's 'Using the package' section."
    text = (ROOT / 'README.md').read_text(encoding='utf-8')
    assert '## Using the package' in text, "README.md has no '## Using the package' section"
    section = re.split(r'\n## ', text.split('## Using the package', 1)[1], maxsplit=1)[0]
    m = re.search(r'```python\n(.*?)```', section, re.S)
    assert m, "README.md's 'Using the package' section has no ```python block"
    return m.group(1)


def console_scripts() -> list:
    "Names of the console scripts settings.ini declares."
    cfg = configparser.ConfigParser(delimiters=['=']); cfg.read(ROOT / 'settings.ini', encoding='utf-8')
    return [s.split('=', 1)[0] for s in cfg['DEFAULT'].get('console_scripts', '').split()]


def run(cmd, **kw):
    "Run `cmd`, failing the test with its output if it fails."
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kw)
    assert res.returncode == 0, f'{cmd} failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}'
    return res


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    "(venv folder, its python, a clean environment for subprocesses, a work folder) with the freshly built wheel installed."
    tmp = tmp_path_factory.mktemp('wheel')
    src = tmp / 'src'                       # build from a copy: no build/ or egg-info left in the repository
    src.mkdir()
    for f in BUILD_FILES:
        if (ROOT / f).exists(): shutil.copy2(ROOT / f, src / f)
    shutil.copytree(ROOT / 'recsysllm_nb', src / 'recsysllm_nb', ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'PYTHONHOME', 'PYTHONSTARTUP', 'VIRTUAL_ENV')}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK='1', PIP_NO_INPUT='1', PIP_NO_INDEX='1', HF_HUB_OFFLINE='1',
               TRANSFORMERS_OFFLINE='1', TOKENIZERS_PARALLELISM='false', MPLBACKEND='Agg')
    dist = tmp / 'dist'
    if all(importlib.util.find_spec(m) for m in ('setuptools', 'packaging')):
        isolation = ['--no-build-isolation']    # build offline with this environment's setuptools
    else:                                       # pip's isolated build fetches setuptools (network or pip's cache)
        isolation = []; env.pop('PIP_NO_INDEX')
    run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', *isolation, '-q', '-w', dist, src], env=env, cwd=tmp)
    wheels = list(dist.glob('recsysllm_nb-*.whl'))
    assert len(wheels) == 1, f'expected one wheel in {dist}, found {wheels}'
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert 'recsysllm_nb/data.py' in names and 'recsysllm_nb/textualize.py' in names, names
    assert not any(n.startswith(('nbs/', 'tests/')) for n in names), 'the wheel ships notebooks or tests'

    env_dir = tmp / 'venv'
    venv.create(env_dir, with_pip=False, system_site_packages=False, symlinks=True)
    py = env_dir / 'bin' / 'python'
    run([sys.executable, '-m', 'pip', '--python', py, 'install', '--no-deps', '-q', wheels[0]], env=env, cwd=tmp)
    site = Path(run([py, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'], env=env, cwd=tmp).stdout.strip())
    ours = Path(sysconfig.get_paths()['purelib'])         # the dependencies of the test's own environment
    (site / '_recsysllm_test_deps.pth').write_text(f'{ours}\n')
    work = tmp / 'work'; work.mkdir()
    return env_dir, py, env, work, site


def test_imports_from_the_wheel(installed):
    "`import recsysllm_nb` resolves to the new environment's site-packages, never to the repository."
    env_dir, py, env, work, site = installed
    out = run([py, '-c', 'import recsysllm_nb, recsysllm_nb.data as d; print(recsysllm_nb.__file__); print(d.__file__)'],
              env=env, cwd=work).stdout.split()
    for f in out:
        p = Path(f).resolve()
        assert p.is_relative_to(site.resolve()), f'{p} is not under the new environment ({site})'
        assert not p.is_relative_to(ROOT.resolve()), f'{p} comes from the repository'


def test_readme_quick_start(installed):
    "The README's 'Using the package' snippet runs in the new environment from an empty folder and prints a real user."
    env_dir, py, env, work, site = installed
    (work / 'quick_start.py').write_text(readme_snippet())
    out = run([py, 'quick_start.py'], env=env, cwd=work).stdout
    assert out.startswith('The user is '), f'unexpected output: {out[:500]!r}'
    assert 'the user rated' in out, f'no behaviour sequence in: {out[:500]!r}'


def test_console_scripts(installed):
    "Every console script of settings.ini is in the new environment's bin; `recsysllm_data` runs there."
    env_dir, py, env, work, site = installed
    scripts = console_scripts()
    assert 'recsysllm_data' in scripts
    for s in scripts:
        f = env_dir / 'bin' / s
        assert f.exists() and os.access(f, os.X_OK), f'console script {s} missing from {env_dir / "bin"}'
        assert str(env_dir) in '\n'.join(f.read_text().splitlines()[:3]), f'{s} does not run the new environment\'s python'
    out = run([env_dir / 'bin' / 'recsysllm_data', '--dataset', 'ml-100k'], env=env, cwd=work).stdout
    assert '"interactions": 100000' in out.splitlines()[-1], out
