"""Wrap exported notebook lines longer than 120 characters without changing what the code does.

Three rewrites, each applied to one physical line of an exported cell:
- a break after a comma inside brackets (the continuation aligned under the bracket, or indented when that is far right);
- a long string literal inside brackets cut into adjacent literals (Python joins them back at compile time);
- a trailing comment moved onto the lines above its code (fastcore's `docments` reads a parameter's comment there too).
The tool refuses a notebook unless every module it exports parses to the same AST before and after.
A notebook is rewrapped a cell at a time while it stays within its size limit (400 code lines, no exported cell over
40 lines, or the debt recorded in tests/size_debt.json).
Run: python tools/wrap_long_lines.py nbs/*.ipynb  (then nbdev_clean and nbdev_export)."""
import ast, io, json, sys, textwrap, tokenize
from pathlib import Path

LIMIT = 120

def _tokens(src):
    return list(tokenize.generate_tokens(io.StringIO(src).readline))

def _split_comment(line, src_tokens, lineno):
    "The line's code and its trailing comment ('' when none), from the tokenizer (a '#' inside a string is not one)."
    for t in src_tokens:
        if t.start[0] == lineno and t.type == tokenize.COMMENT and line[:t.start[1]].strip():
            return line[:t.start[1]].rstrip(), t.string
    return line, ''

def _open_brackets(toks, lineno, col):
    "Stack of (line, col) of the brackets still open just before (lineno, col)."
    st = []
    for t in toks:
        if t.start >= (lineno, col): break
        if t.type == tokenize.OP and t.string in '([{': st.append(t.start)
        elif t.type == tokenize.OP and t.string in ')]}': st.pop()
    return st

def _indent_for(line, open_at, lineno):
    "Continuation indent: under the innermost bracket (this line's own when it opened earlier; + 8 when far right)."
    ind = len(line) - len(line.lstrip())
    if open_at and open_at[0] < lineno: return ind                  # a continuation line already: keep its alignment
    if open_at and open_at[1] + 1 <= 64: return open_at[1] + 1
    return ind + 8

KEYWORDS = ('for', 'if', 'else', 'and', 'or')

def _depths(toks):
    "Per token: the stack of open brackets before it, and whether it sits in a comprehension target (for ... in)."
    st, out, target = [], [], {}
    for t in toks:
        out.append((tuple(st), target.get(len(st), False)))
        if t.type == tokenize.OP and t.string in '([{': st.append(t.start)
        elif t.type == tokenize.OP and t.string in ')]}': target.pop(len(st), None); st.pop()
        elif t.type == tokenize.NAME and t.string == 'for': target[len(st)] = True
        elif t.type == tokenize.NAME and t.string == 'in': target[len(st)] = False
        elif t.type == tokenize.NAME and t.string == 'lambda': target[len(st)] = True
        elif t.type == tokenize.OP and t.string == ':' and target.get(len(st)): target[len(st)] = False
    return out

def _split_header(src, lineno):
    "`if x: stmt` (any compound header with its body on the same line) becomes the header, then the body indented."
    lines = src.split('\n'); line = lines[lineno - 1]; toks = _tokens(src)
    first = next((t for t in toks if t.start[0] == lineno and t.type not in (tokenize.INDENT, tokenize.DEDENT)), None)
    if first is None or first.string not in ('if', 'elif', 'else', 'for', 'while', 'with', 'try', 'except', 'finally',
                                             'def', 'class'): return None
    for t, (st, _) in zip(toks, _depths(toks)):
        if t.start[0] == lineno and t.type == tokenize.OP and t.string == ':' and not st:
            body = line[t.end[1]:].strip()
            if not body or body.startswith('#'): return None
            ind = len(line) - len(line.lstrip())
            lines[lineno - 1:lineno] = [line[:t.end[1]], ' ' * (ind + 4) + body]
            return '\n'.join(lines)
    return None

def _split_semicolon(src, lineno):
    "`a; b` (statements at depth 0) becomes one statement per line, at the same indent."
    lines = src.split('\n'); line = lines[lineno - 1]; toks = _tokens(src)
    for t, (st, _) in zip(toks, _depths(toks)):
        if t.start[0] == lineno and t.type == tokenize.OP and t.string == ';' and not st:
            rest = line[t.end[1]:].strip()
            if not rest or rest.startswith('#'): return None
            ind = len(line) - len(line.lstrip())
            first = line[:ind + len(line[ind:].split(None, 1)[0])]
            if first.strip() in ('if', 'elif', 'else:', 'for', 'while', 'with', 'try:', 'except', 'def', 'class'):
                return None                                           # a compound header's body: _split_header first
            lines[lineno - 1:lineno] = [line[:t.start[1]].rstrip(), ' ' * ind + rest]
            return '\n'.join(lines)
    return None

def _break_bracketed(src, lineno):
    "Break line `lineno` inside brackets: after a comma or before for / if / else / and / or, at the outermost depth."
    lines = src.split('\n'); line = lines[lineno - 1]; toks = _tokens(src)
    cands, close, opened = [], {}, []
    for t in toks:                                        # where each bracket closes
        if t.type == tokenize.OP and t.string in '([{': opened.append(t.start)
        elif t.type == tokenize.OP and t.string in ')]}': close[opened.pop()] = t.start
    for t, (st, target) in zip(toks, _depths(toks)):
        if t.start[0] != lineno or not st: continue
        end = close.get(st[-1], (0, 0))
        if end[0] == lineno and end[1] - t.end[1] < 8: continue     # a stub of a few characters would be left
        if t.type == tokenize.OP and t.string == ',' and not target: cut = t.end[1]
        elif t.type == tokenize.NAME and t.string in KEYWORDS and t.start[1] > 0 and line[t.start[1] - 1] == ' ':
            cut = t.start[1]
        else: continue
        if cut > LIMIT or not line[cut:].strip() or line[cut:].lstrip().startswith('#') or not line[:cut].strip():
            continue
        if line[:cut].strip().endswith(('(', '[', '{')): continue
        cands.append((len(st), t.type == tokenize.NAME, -cut, cut, st[-1]))   # outermost, commas first, rightmost
    if not cands: return None
    *_, cut, open_at = min(cands)
    ind = _indent_for(line, open_at, lineno)
    head, tail = line[:cut].rstrip(), line[cut:].strip()
    if len(' ' * ind + tail) >= len(line) or len(head) <= ind: return None      # no progress
    nxt = lines[lineno] if lineno < len(lines) else ''
    first_next = next((t for t in toks if t.start[0] == lineno + 1 and t.type not in (tokenize.NL, tokenize.NEWLINE)),
                      None)
    same = first_next is not None and dict(zip(map(id, toks), _depths(toks)))[id(first_next)][0][-1:] == (open_at,)
    if same and not any(t.type == tokenize.COMMENT and t.start[0] in (lineno, lineno + 1) for t in toks):
        # the bracket goes on over the next line: carry the cut-off part over to it (that line is rewrapped in turn)
        lines[lineno - 1:lineno + 1] = [head, nxt[:len(nxt) - len(nxt.lstrip())] + tail + ' ' + nxt.strip()]
        return '\n'.join(lines)
    lines[lineno - 1:lineno] = [head, ' ' * ind + tail]
    return '\n'.join(lines)

def _paren_wrap(src, lineno):
    "`x = a if c else b` / `return a or b` at depth 0: the value put in parentheses and broken before if / else / and / or."
    lines = src.split('\n'); line = lines[lineno - 1]; toks = _tokens(src)
    if any(t.type == tokenize.COMMENT and t.start[0] == lineno for t in toks): return None
    if not line.rstrip().endswith(tuple(')]}\'"') + tuple('abcdefghijklmnopqrstuvwxyz0123456789_')): return None
    start = None
    for t, (st, _) in zip(toks, _depths(toks)):
        if t.start[0] != lineno: continue
        if st: 
            if t.start[0] == lineno and st[0][0] != lineno: return None           # a continuation line
            continue
        if start is None:
            if t.type == tokenize.NAME and t.string == 'return': start = t.end[1] + 1
            elif t.type == tokenize.OP and t.string in ('=', '+=', '-=', '|='): start = t.end[1] + 1
            elif t.type == tokenize.OP and t.string == ';': return None
            continue
        if t.type == tokenize.OP and t.string in ('=', ';', ':'): return None
    if start is None: return None
    cands = [t.start[1] for t, (st, _) in zip(toks, _depths(toks))
             if t.start[0] == lineno and not st and t.type == tokenize.NAME and t.string in ('if', 'else', 'and', 'or')
             and start + 10 < t.start[1] <= LIMIT - 1]
    if not cands: return None
    cut = cands[-1]
    head, tail = line[:start] + '(' + line[start:cut].rstrip(), line[cut:].strip() + ')'
    lines[lineno - 1:lineno] = [head, ' ' * (start + 1) + tail]
    return '\n'.join(lines)

def _split_string(src, lineno):
    "Cut a single-line string literal inside brackets (or a docstring) that crosses the limit into two adjacent literals."
    lines = src.split('\n'); line = lines[lineno - 1]; toks = _tokens(src)
    for t in toks:
        if t.type != tokenize.STRING or t.start[0] != lineno or t.end[0] != lineno or t.end[1] <= LIMIT: continue
        s = t.string
        pre = s[:len(s) - len(s.lstrip('rRbBfFuU'))]
        if 'b' in pre.lower() or s[len(pre):len(pre) + 3] in ('"""', "'''"): continue
        q = s[len(pre)]
        body_start = t.start[1] + len(pre) + 1
        # the last space before the limit, not inside an f-string field or right after a backslash
        room = LIMIT - 2 - body_start
        cands = [i for i, c in enumerate(s[len(pre) + 1:-1]) if c == ' ' and i < room]
        if 'f' in pre.lower():
            body = s[len(pre) + 1:-1]
            def depth(i): return body[:i].count('{') - body[:i].count('}')
            cands = [i for i in cands if depth(i) == 0]
        if not cands or cands[-1] < 10: continue
        i = cands[-1] + 1                                            # keep the space on the first part
        first, second = s[:len(pre) + 1 + i] + q, pre + q + s[len(pre) + 1 + i:]
        st = _open_brackets(toks, lineno, t.start[1])
        before = line[:t.start[1]]
        nxt = lines[lineno].lstrip() if lineno < len(lines) else ''
        if st and not line[t.end[1]:].strip() and nxt.startswith(pre + q) and not nxt.startswith(pre + q * 3):
            # the literal continues on the next line (adjacent literals): carry the cut-off words over to it
            lines[lineno - 1] = before + first
            k = len(lines[lineno]) - len(nxt)
            lines[lineno] = lines[lineno][:k] + pre + q + s[len(pre) + 1 + i:-1] + nxt[len(pre) + 1:]
            return '\n'.join(lines)
        if st:
            ind = t.start[1] if not before.strip() or st[-1][0] != lineno else _indent_for(line, st[-1], lineno)
            if st[-1][0] == lineno and st[-1][1] + 1 <= 64: ind = max(ind, st[-1][1] + 1) if before.strip() else ind
            lines[lineno - 1:lineno] = [before + first, ' ' * ind + second + line[t.end[1]:]]
        elif not before.strip() and not line[t.end[1]:].strip():   # a statement that is only the string: a docstring
            ind = t.start[1]
            lines[lineno - 1:lineno] = [' ' * ind + '(' + first, ' ' * (ind + 1) + second + ')']
        else: continue
        return '\n'.join(lines)
    return None

def _move_comment(src, lineno):
    "Move the trailing comment of line `lineno` onto comment lines just above it, wrapped within the limit."
    lines = src.split('\n'); line = lines[lineno - 1]
    code, com = _split_comment(line, _tokens(src), lineno)
    if not com or len(code) > LIMIT: return None
    if code.lstrip().startswith(('def ', 'class ', ')')): return None   # docments reads only the def's own lines
    if lineno > 1 and lines[lineno - 2].lstrip().startswith('#'): return None   # would join the comment above
    ind = ' ' * (len(code) - len(code.lstrip()))
    text = com.lstrip('#').strip()
    wrapped = textwrap.wrap(text, LIMIT - len(ind) - 2) or ['']
    lines[lineno - 1:lineno] = [ind + '# ' + w for w in wrapped] + [code]
    return '\n'.join(lines)

def fix_cell(src):
    "The cell's source with its long lines wrapped where one of the rewrites applies (others left as they are)."
    for _ in range(200):
        try: long = [i + 1 for i, l in enumerate(src.split('\n')) if len(l) > LIMIT]
        except Exception: return src
        changed = False
        for n in long:
            line = src.split('\n')[n - 1]
            code, com = _split_comment(line, _tokens(src), n)
            order = (_move_comment,) if com and len(code) <= LIMIT else ()   # a parameter's comment stays its docment
            for f in order + (_split_header, _split_semicolon, _paren_wrap, _break_bracketed, _split_string, _move_comment):
                try: new = f(src, n)
                except (tokenize.TokenError, IndentationError, IndexError): new = None
                if new is not None and new != src:
                    try: ast.parse(new)
                    except SyntaxError: continue
                    src, changed = new, True; break
            if changed: break
        if not changed: return src
    return src

def _strip(src):
    "Cell source without its nbdev directives and magics (for parsing)."
    return '\n'.join('' if l.lstrip().startswith(('%', '!')) else l for l in src.split('\n'))

def _budget(name):
    "(code lines, exported cells over 40 lines) a notebook may reach: 400 and 0, or its recorded debt (tests/size_debt.json)."
    f = Path(__file__).parent.parent / 'tests' / 'size_debt.json'
    debt = json.loads(f.read_text()) if f.exists() else {}
    return (max(400, debt.get('notebook_code_lines', {}).get(name, 0)), debt.get('cells_over_40_lines', {}).get(name, 0))

def _code_lines(nb):
    code = [''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'code']
    return sum(len(s.splitlines()) for s in code), sum(1 for s in code if s.startswith('#| export') and len(s.splitlines()) > 40)

def main(paths):
    "Wrap the long lines of each notebook's exported cells, a cell at a time while the notebook stays within its budget."
    total = 0
    for p in paths:
        nb = json.loads(open(p).read()); n = 0
        max_lines, max_big = _budget(Path(p).name)
        for c in nb['cells']:
            if c['cell_type'] != 'code': continue
            src = ''.join(c['source'])
            if not src.lstrip().startswith(('#| export', '#|export', '#| exporti')): continue
            new = fix_cell(src)
            if new == src: continue
            c['source'] = new.splitlines(keepends=True)
            lines, big = _code_lines(nb)
            c['source'] = src.splitlines(keepends=True)
            if lines > max_lines or big > max_big: continue          # would outgrow the notebook's size limit
            if ast.dump(ast.parse(_strip(src))) != ast.dump(ast.parse(_strip(new))):
                sys.exit(f'{p}: a rewrite changed the AST of a cell; nothing written')
            n += sum(len(l) > LIMIT for l in src.split('\n')) - sum(len(l) > LIMIT for l in new.split('\n'))
            c['source'] = new.splitlines(keepends=True)
        if n:
            open(p, 'w').write(json.dumps(nb, indent=1, ensure_ascii=False) + '\n'); total += n
            print(f'{p}: {n} long lines fewer')
    print(f'{total} long lines fewer in all')

if __name__ == '__main__': main(sys.argv[1:])
