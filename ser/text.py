"""Text: one normalisation of words for alignment, embeddings and recognised
words."""
import re
import string

_FILLER = re.compile(r'<[^>]*>')
_PUNCTUATION = str.maketrans({c: ' ' for c in string.punctuation if c != "'"})


def normalise_words(text):
    """Lower-cased words of `text` with fillers (`<filler>`, `<laugh>`, ...)
    and punctuation removed; apostrophes inside words are kept (don't, car's)."""
    text = _FILLER.sub(' ', text.lower()).translate(_PUNCTUATION)
    return [word for word in (w.strip("'") for w in text.split()) if word]
