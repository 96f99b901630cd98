"""A text's word keys: what the campaign's content evidence counts, never the text itself.

Raids copy and paste; people write their own words, but share common ones too ("cc",
"ça va ?", "t'es où ?"). So a text's *words* are its content tokens: ``normalise``d
(``actors.textfilter``: accents, case and punctuation gone), digits dropped ("lol123",
"issou 4821"), runs of one letter squeezed ("ayaaaaa" -> "aya"), and only those of at least
``MIN_LETTERS`` letters that are not common words (``STOP_WORDS``: function words and the
greetings everybody writes, French and English). Each is kept as a key: the CRC-32 of the
word in 8 hex digits; ``word_keys`` returns them sorted, deduplicated, at most ``MAX_WORDS``,
joined by spaces (one string: it travels in events and compares equal after JSON). One more
key stands for the whole text (all its tokens, common ones too, in order; for a text of
symbols only, the symbols squeezed), written "=" and 8 hex digits (the *body key*; "~" when
the text has no content word: "salut ça va ?", but also a pasted "lol", "😂😂😂" or "c'est
non ? c'est oui", one body each).

What marks a raid is not a word that repeats but a word that arrives with a burst of first
texts and was rare before it: ``actors.evidence`` decides that from these keys.

Pure: no clock, no I/O.
"""

from __future__ import annotations

import zlib
from functools import lru_cache

from actors.textfilter import normalise

MIN_LETTERS = 3
MAX_WORDS = 12


def squeeze(word: str) -> str:
    """Runs of one character made one: "ayaaaa" -> "aya", "cagnotte" -> "cagnote"."""
    out = []
    last = ""
    for c in word:
        if c != last:
            out.append(c)
            last = c
    return "".join(out)


# Common words, written as they are compared (normalised and squeezed). People share them:
# they never mark a raid, whatever their count.
_COMMON = """
les des est une pas que qui moi toi mon ton son mes tes ses pour par sur avec dans tout tous
toute mais donc car bien tres trop plus moins fait faire fais suis etes sont ete avoir etre
ont vous nous elle elles ils lui leur cette ces aux oui non quoi quand comment pourquoi ici
cela ceci alors aussi encore deja jamais rien peu peux peut veux veut vais vas va sais sait
voir vois vu dit dis dire comme chez ainsi apres avant entre sans sous vers ben bah hein
quel quelle quels quelles dont mais meme autre autres tjrs toujours avais avait etais etait
salut coucou bonjour bonsoir slt bjr bsr hey hello helo coucou cava cva allo alo stp svp mdr
lol ptdr xptdr wesh merci bisous bise bises okay okk ouais ouai nan yes yep bye ciao tchao
the and you are this that what with for not your how who why where just have has was can
will yeah too now get got all any but our out its him her she they them then than there
here from into about know like want need come see hey hello please thanks
"""
STOP_WORDS: frozenset[str] = frozenset(squeeze(w) for w in _COMMON.split())


def key_of(word: str) -> str:
    return f"{zlib.crc32(word.encode()):08x}"


def word_keys(body: str) -> str:
    """The text's word keys (see the module docstring); "" when it has none.

    Bodies up to one SMS long are cached: a raid repeats the same few texts, and the audit
    screens every text again."""
    if len(body) <= _CACHED_CHARS:
        return _word_keys_cached(body)
    return _word_keys(body)


_CACHED_CHARS = 160


def _word_keys(body: str) -> str:
    keys = set()
    whole = []
    for token in normalise(body):
        if not token.isalpha():
            token = "".join(c for c in token if not c.isdigit())
        word = squeeze(token)
        if word:
            whole.append(word)
        if len(word) >= MIN_LETTERS and word not in STOP_WORDS:
            keys.add(key_of(word))
    words = sorted(keys)[:MAX_WORDS]
    if not whole:  # no letter nor digit: the symbols themselves ("😂😂😂" -> "😂")
        whole = [squeeze("".join(body.split()))]
    if whole[0]:  # the body key: "=" and 8 hex digits; "~" for a body of common words only
        words.append(("=" if keys else COMMON_BODY) + key_of(" ".join(whole)))
    return " ".join(words)


COMMON_BODY = "~"  # the body key's mark of a text of common words only ("salut ça va ?")


def is_body_key(key: str) -> bool:
    return key[0] in "=~"


_word_keys_cached = lru_cache(maxsize=8192)(_word_keys)
