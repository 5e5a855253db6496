"""Entity-aware tokenization (recsysllm_nb.entities): property tests over random texts and entity layouts for the
tokenizer families (byte-level BPE, Llama-3 regex BPE, WordPiece, SentencePiece Unigram / BPE), checked against a
plain-Python reference of the assignment rule; special tokens and save / load round trips."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from transformers import AutoTokenizer, PreTrainedTokenizerFast
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
from recsysllm_nb.data import load_ml100k, leave_one_out
from recsysllm_nb.textualize import Entity, TextSample, textualize_corpus
from recsysllm_nb.entities import (TokenizedSample, check_units, tokenize_sample, tokenize_samples, unit_spans,
                                   unit_starts)
from recsysllm_nb.tokenizer import (SPECIAL_TOKENS, SpecialIds, TOKENIZER_KINDS, add_special_tokens, special_ids,
                                    train_tokenizer, demo_tokenizer)

EXTRA = 'éüßñ中文—“”😀'                     # unicode the tokenizers are trained on (so no unknown token appears)
WORD_CHARS = 'abcdeStTyoOrWars0123' + EXTRA
PUNCT = ',.;:!?()[]\'"-&'
SPACES = [' ', '  ', '\n', '\t', ' \n ']
UNICODE_LINE = ' '.join([EXTRA, ' '.join(EXTRA), PUNCT, ' '.join(PUNCT), '\t\n', WORD_CHARS, ' '.join(WORD_CHARS)])


@pytest.fixture(scope='module')
def corpus():
    tables = load_ml100k()
    return textualize_corpus(tables, leave_one_out(tables), users=[str(u) for u in range(1, 121)])


@pytest.fixture(scope='module')
def toks(corpus):
    texts = [s.text for s in corpus] + [UNICODE_LINE] * 5
    return {k: train_tokenizer(texts, vocab_size=1200, kind=k) for k in TOKENIZER_KINDS}


# ---------------------------------------------------------------- a plain-Python reference of the rule
def reference_entity(text, offsets, entities):
    "Entity of each token by the documented rule, char by char (None for a straddling token)."
    owner = [-1] * len(text)
    for k, e in enumerate(entities):
        for c in range(e.start, e.end): owner[c] = k
    out = []
    for a, z in offsets:
        nw = {owner[c] for c in range(a, z) if not text[c].isspace()}
        if a == z: out.append(next((k for k, e in enumerate(entities) if e.start < a < e.end), -1))
        elif not any(not text[c].isspace() for c in range(a, z)):
            own = {owner[c] for c in range(a, z)}
            out.append(own.pop() if len(own) == 1 else -1)
        elif len(nw) == 1: out.append(nw.pop())
        else: out.append(None)
    return out


def assert_properties(sample, ts, tok):
    text, n = sample.text, len(ts)
    assert ts.input_ids.dtype == np.int64 and ts.entity.dtype == np.int32 and ts.sentence.dtype == np.int32
    # the rule, checked against the reference
    assert ts.entity.tolist() == reference_entity(text, ts.offsets.tolist(), sample.entities)
    # units partition the stream; each entity is exactly one unit of >= 1 token
    sp = unit_spans(ts.entity)
    assert sp[:, 0].tolist() == ([0] + sp[:-1, 1].tolist())[:len(sp)] and (n == 0 or sp[-1, 1] == n)
    assert sorted(sp[sp[:, 2] >= 0, 2].tolist()) == list(range(len(sample.entities)))
    assert unit_starts(ts.entity).sum() == len(sp)
    # plain text between entities never lands in an entity; entity chars never land in plain tokens
    owner = np.full(len(text), -1)
    for k, e in enumerate(sample.entities): owner[e.start:e.end] = k
    for (a, z), k in zip(ts.offsets.tolist(), ts.entity.tolist()):
        assert all(owner[c] == k for c in range(a, z) if not text[c].isspace()), (text[a:z], k)
    # entity tokens decode to the entity's text (modulo whitespace)
    for k, e in enumerate(sample.entities):
        got = tok.decode(ts.input_ids[ts.entity == k].tolist(), clean_up_tokenization_spaces=False)
        if got.startswith('##'): got = got[2:]    # WordPiece: an entity that starts inside a word begins with '##x'
        assert ''.join(got.split()) == ''.join(text[e.start:e.end].split()), (got, text[e.start:e.end])
    check_units(sample, ts, tok)


# ---------------------------------------------------------------- random texts with random entity layouts
words = st.text(alphabet=WORD_CHARS, min_size=1, max_size=7)
inner = st.sampled_from([' ', ' ', '  ', '-', ', ', ': ', "'", '.', ''])
entity_text = st.builds(lambda w, rest, p, q: p + w + ''.join(s + x for s, x in rest) + q, words,
                        st.lists(st.tuples(inner, words), max_size=3),
                        st.sampled_from(['', '', '(', '"', '[']), st.sampled_from(['', '', ')', '!', '.', ']', '"']))
plain_text = st.lists(st.one_of(words, st.sampled_from(SPACES), st.sampled_from(list(PUNCT))), max_size=4).map(''.join)


@st.composite
def samples(draw):
    "A TextSample: plain / entity segments (entities may touch, sit at the start or end), one or two sentences."
    segs = draw(st.lists(st.tuples(st.booleans(), st.one_of(entity_text, plain_text)), min_size=1, max_size=8))
    text, ents = '', []
    for is_ent, s in segs:
        if is_ent and s.strip():
            s = s.strip()
            ents.append(Entity(len(text), len(text) + len(s), draw(st.sampled_from(['item', 'feature'])), str(len(ents))))
        text += s
    sents = [(0, len(text))] if text else []
    return TextSample(text, ents, sents, user_id=f'h{len(text)}')


@pytest.mark.parametrize('kind', TOKENIZER_KINDS)
@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sample=samples())
def test_properties(kind, toks, sample):
    tok = toks[kind]
    ts = tokenize_sample(sample, tok)
    assert_properties(sample, ts, tok)


@pytest.mark.parametrize('kind', TOKENIZER_KINDS)
@settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(samples(), min_size=1, max_size=6))
def test_batch_equals_single(kind, toks, batch):
    tok = toks[kind]
    for s, ts in zip(batch, tokenize_samples(batch, tok)):
        one = tokenize_sample(s, tok)
        for f in ('input_ids', 'entity', 'sentence', 'offsets'): np.testing.assert_array_equal(getattr(ts, f), getattr(one, f))


@pytest.mark.parametrize('kind', TOKENIZER_KINDS)
def test_real_users(kind, toks, corpus):
    tok = toks[kind]
    for s, ts in zip(corpus[:40], tokenize_samples(corpus[:40], tok)): assert_properties(s, ts, tok)


def test_no_straddle_keeps_natural_tokenization(toks, corpus):
    tok = toks['wordpiece']   # BERT splits at punctuation: no token ever straddles an entity boundary
    for s, ts in zip(corpus[:20], tokenize_samples(corpus[:20], tok, on_straddle='error')):
        assert ts.input_ids.tolist() == tok(s.text, add_special_tokens=False).input_ids


# ---------------------------------------------------------------- edge cases and errors
def test_whitespace_tokens(toks):
    tok = toks['bpe']
    s = TextSample('saw Star  Wars  then', [Entity(4, 14, 'item', '50')], [(0, 20)], 'u')
    ts = tokenize_sample(s, tok)
    toks_ = tok.convert_ids_to_tokens(ts.input_ids.tolist())
    assert [t for t, k in zip(toks_, ts.entity) if k == 0][0].startswith('Ġ')     # ' Star' carries the space before
    assert ''.join(tok.decode(ts.input_ids[ts.entity == 0].tolist()).split()) == 'StarWars'
    assert ts.entity[-1] == -1 and ts.entity[0] == -1


def test_straddle_error_and_split(toks):
    tok = toks['unigram']     # SentencePiece: 'Wars.' is one word
    s = TextSample('I saw Star Wars. Fine', [Entity(6, 15, 'item', '50')], [(0, 16), (17, 21)], 'u7')
    with pytest.raises(ValueError, match=r"user_id 'u7'.*straddles entity 0 'Star Wars' \(item '50'\)"):
        tokenize_sample(s, tok, on_straddle='error')
    ts = tokenize_sample(s, tok)
    assert_properties(s, ts, tok)
    assert ts.sentence.tolist()[-1] == 1 and set(ts.sentence.tolist()) == {0, 1}


def test_errors(toks):
    tok = toks['bpe']
    with pytest.raises(ValueError, match=r"user_id 'u1'.*entity 0 '  ' is only whitespace"):
        tokenize_sample(TextSample('a    b', [Entity(2, 4, 'item', '1')], [(0, 6)], 'u1'), tok)
    with pytest.raises(ValueError, match=r"user_id 'u0'.*entity 1 '\\x00' \(item '2'\) maps to no token"):
        # BERT's normalizer deletes control characters: that entity has no token
        tokenize_sample(TextSample('ab \x00 c', [Entity(0, 2, 'item', '1'), Entity(3, 4, 'item', '2')], [(0, 6)], 'u0'),
                        toks['wordpiece'])
    with pytest.raises(ValueError, match=r"user_id 'u2'.*entity 1 span"):
        tokenize_sample(TextSample('abc def', [Entity(0, 3, 'item', '1'), Entity(2, 5, 'item', '2')], [(0, 7)], 'u2'), tok)
    with pytest.raises(ValueError, match='outside the text'):
        tokenize_sample(TextSample('abc', [Entity(0, 9, 'item', '1')], [(0, 3)], 'u3'), tok)
    with pytest.raises(ValueError, match='on_straddle'):
        tokenize_sample(TextSample('abc', [], [], 'u4'), tok, on_straddle='absorb')
    with pytest.raises(ValueError, match='unknown kind'): train_tokenizer(['abc'], kind='bytes')


def test_empty_and_plain(toks):
    tok = toks['bpe']
    ts = tokenize_samples([TextSample('', [], [], 'e'), TextSample('no entities here', [], [(0, 16)], 'p')], tok)
    assert len(ts[0]) == 0 and ts[0].offsets.shape == (0, 2)
    assert (ts[1].entity == -1).all() and unit_starts(ts[1].entity).all()
    assert tokenize_samples([], tok) == []


def test_unit_helpers():
    ent = np.array([-1, 0, 0, 0, -1, -1, 1, 1, 2, -1], np.int32)
    assert unit_starts(ent).tolist() == [True, True, False, False, True, True, True, False, True, True]
    assert unit_spans(ent).tolist() == [[0, 1, -1], [1, 4, 0], [4, 5, -1], [5, 6, -1], [6, 8, 1], [8, 9, 2], [9, 10, -1]]
    assert unit_spans(np.zeros(0, np.int32)).shape == (0, 3)


# ---------------------------------------------------------------- special tokens, determinism, save / load
@pytest.mark.parametrize('kind', TOKENIZER_KINDS)
def test_save_load_roundtrip(kind, toks, corpus, tmp_path):
    tok = toks[kind]
    assert special_ids(tok) == SpecialIds(0, 1, 2, 3, 4, 5, 6)
    tok.save_pretrained(tmp_path / kind)
    back = AutoTokenizer.from_pretrained(str(tmp_path / kind))
    assert back.is_fast and special_ids(back) == special_ids(tok)
    assert back.get_vocab() == tok.get_vocab()
    for t in SPECIAL_TOKENS.values(): assert back.tokenize(f'x {t} y').count(t) == 1     # never split
    a, b = tokenize_sample(corpus[0], tok), tokenize_sample(corpus[0], back)
    assert a.input_ids.tolist() == b.input_ids.tolist() and a.entity.tolist() == b.entity.tolist()


@pytest.mark.parametrize('kind', TOKENIZER_KINDS)
def test_deterministic(kind, corpus):
    texts = [s.text for s in corpus[:60]]
    assert train_tokenizer(texts, 800, kind).get_vocab() == train_tokenizer(texts, 800, kind).get_vocab()


def test_add_special_tokens_roundtrip(corpus, tmp_path):
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer, raw.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    raw.train_from_iterator([s.text for s in corpus[:30]], trainers.BpeTrainer(
        vocab_size=400, special_tokens=['<|endoftext|>'], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token='<|endoftext|>')
    with pytest.raises(KeyError, match='add_special_tokens'): special_ids(tok)
    n = len(tok)
    assert add_special_tokens(tok) == 6 and len(tok) == n + 6
    ids = special_ids(tok)
    assert ids.eos == 0 and sorted(vars(ids).values()) == [0] + list(range(n, n + 6))
    assert add_special_tokens(tok) == 0
    tok.save_pretrained(tmp_path / 't')
    back = AutoTokenizer.from_pretrained(str(tmp_path / 't'))
    assert special_ids(back) == ids and add_special_tokens(back) == 0
    assert back.tokenize('a [gMASK] b').count('[gMASK]') == 1


def test_demo_tokenizer_cached(tmp_path):
    tok = demo_tokenizer(tmp_path / 'demo')
    assert 4000 <= len(tok) <= 8000 and (tmp_path / 'demo' / 'tokenizer.json').exists()
    again = demo_tokenizer(tmp_path / 'demo')
    assert again.get_vocab() == tok.get_vocab() and special_ids(again) == special_ids(tok)
