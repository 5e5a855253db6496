"""The explorer in a real browser: JupyterLab (127.0.0.1, random token, fresh workspace and config) driven by Playwright on
Debian's Chromium. Opens a small notebook that builds the explorer on ML-100K user 1, runs all cells, changes the seed and
the level through the widgets and checks that the rendered strip changed and that the position table is an HTML table
(text cells, one per token, scrolling sideways). Screenshots go to artifacts/ (git-ignored).
Needs /usr/bin/chromium, playwright and jupyterlab: `tools/install_browser.sh` installs them (never `playwright install`)."""
import importlib.util, json, os, re, secrets, shutil, signal, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = '/usr/bin/chromium'
MISSING = ([] if Path(CHROMIUM).exists() else [CHROMIUM]) + [m for m in ('playwright', 'jupyterlab')
                                                             if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f'browser test needs {", ".join(MISSING)}: run tools/install_browser.sh')

NOTEBOOK_CELLS = [
    "from recsysllm_nb.explorer import Explorer\nex = Explorer(user='1', level='entity', seed=0)\nui = ex.widget()\nui",
    "print('explorer ready:', ex.summary())",
]
# the kernel status as the notebook panel sees it (needs --LabApp.expose_app_in_browser)
KERNEL_STATUS = """() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return k ? k.status : null; }"""

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _api(base, token, path, method='GET'):
    req = urllib.request.Request(f'{base}{path}', method=method, headers={'Authorization': f'token {token}'})
    with urllib.request.urlopen(req, timeout=10) as r: body = r.read()
    return json.loads(body) if body else None

def _write_notebook(path: Path):
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CELLS]
    nb.metadata['kernelspec'] = dict(name='python3', display_name='Python 3 (ipykernel)', language='python')
    nbformat.write(nb, str(path))

@pytest.fixture
def lab(tmp_path):
    "A JupyterLab server on a free local port with its own token, workspace, config and runtime dirs; stopped by pgid."
    work, home = tmp_path / 'notebooks', tmp_path / 'jupyter'
    work.mkdir(); (home / 'config' / 'labconfig').mkdir(parents=True)
    _write_notebook(work / 'explorer.ipynb')
    # no announcement toast, no news or update checks (nothing leaves the machine)
    (home / 'config' / 'labconfig' / 'page_config.json').write_text(json.dumps(
        {'disabledExtensions': {'@jupyterlab/apputils-extension:announcements': True}}))
    (home / 'config' / 'jupyter_server_config.py').write_text(
        "c.LabApp.news_url = None\nc.LabApp.check_for_updates_class = 'jupyterlab.NeverCheckForUpdate'\n")
    port, token = _free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith(('JUPYTER', 'MPLBACKEND'))}
    env.update(JUPYTER_CONFIG_DIR=str(home / 'config'), JUPYTER_DATA_DIR=str(home / 'data'),
               JUPYTER_RUNTIME_DIR=str(home / 'runtime'), IPYTHONDIR=str(home / 'ipython'),
               TOKENIZERS_PARALLELISM='false', HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1')
    cmd = [sys.executable, '-m', 'jupyterlab', '--no-browser', '--allow-root', '--ip=127.0.0.1', f'--port={port}',
           '--ServerApp.port_retries=0', f'--ServerApp.token={token}', f'--ServerApp.root_dir={work}',
           f'--LabApp.workspaces_dir={home / "workspaces"}', '--LabApp.expose_app_in_browser=True']
    log = open(tmp_path / 'jupyterlab.log', 'w')
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f'http://127.0.0.1:{port}'
    try:
        t0 = time.monotonic()
        while True:
            if proc.poll() is not None:
                pytest.fail(f'JupyterLab exited with {proc.returncode}:\n{(tmp_path / "jupyterlab.log").read_text()[-3000:]}')
            try:
                _api(base, token, '/api/status'); break
            except OSError:
                if time.monotonic() - t0 > 90: pytest.fail('JupyterLab did not answer on /api/status within 90 s')
                time.sleep(0.3)
        yield dict(base=base, token=token, log=tmp_path / 'jupyterlab.log')
    finally:
        try:                                             # kernels run in their own sessions: shut them down first
            for k in _api(base, token, '/api/kernels'): _api(base, token, f'/api/kernels/{k["id"]}', 'DELETE')
        except OSError: pass
        try: os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError: pass
        try: proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL); proc.wait(timeout=10)
        log.close()

def _wait_idle(page, timeout_s=120):
    "Wait until the notebook's kernel is idle (the status the panel itself shows)."
    page.wait_for_function(f'({KERNEL_STATUS})() === "idle"', timeout=timeout_s * 1000)

def test_explorer_in_jupyterlab(lab, tmp_path):
    from playwright.sync_api import sync_playwright
    t0 = time.monotonic()
    base, token = lab['base'], lab['token']
    shots = ROOT / 'artifacts'; shots.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=['--no-sandbox', '--disable-gpu', '--disable-background-networking'])
        try:
            page = browser.new_page(viewport={'width': 1500, 'height': 1100})
            page.set_default_timeout(120_000)
            errors = []
            page.on('pageerror', lambda e: errors.append(str(e)))
            page.goto(f'{base}/lab/tree/explorer.ipynb?token={token}&reset', wait_until='domcontentloaded')
            page.wait_for_function('window.jupyterapp && document.querySelector(".jp-NotebookPanel .jp-Cell")')
            _wait_idle(page)
            sessions = [s for s in _api(base, token, '/api/sessions') if s['path'].endswith('explorer.ipynb')]
            assert len(sessions) == 1, f'expected one kernel session for the notebook, got {sessions}'
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_selector('.rs-view .rs-summary', timeout=180_000)
            page.wait_for_selector('text=explorer ready:', timeout=120_000)
            _wait_idle(page)
            summary = page.locator('.rs-view .rs-summary')
            strip = page.locator('.rs-view .rs-strip')
            s0, x0 = summary.inner_text(), strip.inner_text()
            assert 'user 1 | tokenizer bpe | mode recsysllm | level entity | seed 0' in s0, s0
            masks = page.locator('.rs-strip .rs-tok.rs-mask').all_inner_texts()
            assert masks and set(masks) == {'[M]'}, masks
            assert page.locator('img.rs-view-attention').count() == 1
            assert page.locator('img.rs-view-attention').evaluate('i => i.complete && i.naturalWidth') > 100
            assert page.locator('img.rs-view-table').count() == 0        # the position table is text, not a picture
            n_a, n_b = (int(x) for x in re.search(r'Part A (\d+) tokens, Part B (\d+) tokens', s0).groups())
            row = lambda k, td='td': page.locator(f'.rs-view-table table.rs-ptable tr:has(th:text-is("{k}")) {td}')
            cells = {k: row(k).all_inner_texts() for k in ('token', 'part', 'inter', 'intra')}
            assert all(len(c) == n_a + n_b for c in cells.values()), {k: len(c) for k, c in cells.items()}
            assert cells['token'] == page.locator('.rs-strip .rs-tok').all_inner_texts()
            assert cells['part'] == ['A'] * n_a + ['B'] * n_b
            assert all(x.isdigit() for x in cells['inter'] + cells['intra'])
            assert row('token', 'td.rs-mask').all_inner_texts() == masks
            assert row('token').first.evaluate('e => parseFloat(getComputedStyle(e).fontSize)') >= 11   # readable
            wrap = page.locator('.rs-view-table .rs-ptable-wrap')          # scrolls sideways inside the page
            w = wrap.evaluate('e => [e.scrollWidth, e.clientWidth, e.getBoundingClientRect().right, window.innerWidth]')
            assert w[0] > w[1] and w[2] <= w[3], w
            table0 = page.locator('.rs-ptable').inner_text()
            page.screenshot(path=str(tmp_path / 'explorer_seed0.png'), full_page=True)

            seed = page.locator('.rs-seed input')               # change the seed through the widget
            seed.fill('7'); seed.press('Enter')
            page.wait_for_function("document.querySelector('.rs-view .rs-summary').innerText.includes('seed 7')")
            s1, x1 = summary.inner_text(), strip.inner_text()
            assert x1 != x0, 'the token strip did not change with the seed'
            page.wait_for_function('t => document.querySelector(".rs-ptable").innerText !== t', arg=table0)  # table too
            assert s1.replace('seed 7', 'seed 0').split(' | Part A')[0] == s0.split(' | Part A')[0]

            page.locator('.rs-level select').select_option('sentence')   # ... and the level
            page.wait_for_function("document.querySelector('.rs-view .rs-summary').innerText.includes('level sentence')")
            masks = page.locator('.rs-strip .rs-tok.rs-mask').all_inner_texts()
            assert masks and set(masks) == {'[sM]'}, masks
            page.wait_for_function('() => document.querySelector(".rs-ptable").innerText.includes("[sM]")')
            assert row('token', 'td.rs-mask').all_inner_texts() == masks
            assert page.locator('.rs-view-error').inner_text().strip() == ''
            _wait_idle(page)
            page.screenshot(path=str(tmp_path / 'explorer_sentence.png'), full_page=True)
            assert not [e for e in errors if 'widget' in e.lower()], errors
        finally:
            browser.close()
    for f in ('explorer_seed0.png', 'explorer_sentence.png'): shutil.copy(tmp_path / f, shots / f)
    print(f'browser test: {time.monotonic() - t0:.1f} s; screenshots in {shots}')
