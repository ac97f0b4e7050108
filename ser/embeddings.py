"""Word embeddings per frame: word vectors (gensim KeyedVectors, word2vec
trained on the corpus or given), and the word that overlaps each 250 ms frame
most. The same code frames training data and the recordings the service sees."""

import hashlib
import logging
import os

import numpy as np

import helper
from ser import paths

# A corpus of a few thousand words needs many passes: with gensim's default of 5
# the vectors stay near their tiny random start and carry no meaning to the model.
WORD2VEC_EPOCHS = 100


def stable_seed(word):
    """A seed derived from the word's bytes only, identical in every process
    (Python's hash() of a str changes from process to process)."""
    return int.from_bytes(hashlib.sha256(word.encode('utf-8')).digest()[:8], 'little')


class Embedder:
    """Word -> float32 vector lookup over gensim KeyedVectors. Words missing
    from the vocabulary (also after lower-casing) get a pseudo-random vector
    seeded by the word itself, with the mean norm of the known vectors."""

    def __init__(self, keyed_vectors, path):
        self.path = path
        self.dim = int(keyed_vectors.vector_size)
        self._keyed_vectors = keyed_vectors
        self.mean_norm = self._mean_norm(keyed_vectors.vectors)

    @staticmethod
    def _mean_norm(vectors, chunk=100000):
        # Chunked: a 3M-word model would otherwise need a second full-size copy.
        if len(vectors) == 0:
            return 1.0
        total = sum(float(np.linalg.norm(vectors[i:i + chunk].astype(np.float64), axis=1).sum())
                    for i in range(0, len(vectors), chunk))
        return total / len(vectors)

    def _key(self, word):
        if word in self._keyed_vectors.key_to_index:
            return word
        lower = word.lower()
        return lower if lower in self._keyed_vectors.key_to_index else None

    def is_known(self, word):
        return self._key(word) is not None

    def vector(self, word):
        key = self._key(word)
        if key is not None:
            return np.asarray(self._keyed_vectors[key], dtype=np.float32)
        direction = np.random.default_rng(stable_seed(word)).standard_normal(self.dim)
        return (direction * (self.mean_norm / np.linalg.norm(direction))).astype(np.float32)

    def vectors(self, words):
        """[len(words), dim] float32."""
        if not words:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.vector(word) for word in words])


def read_keyed_vectors(path):
    """gensim KeyedVectors from a .kv file (gensim native) or word2vec/fastText
    vectors, binary when the name ends in .bin, text otherwise."""
    from gensim.models import KeyedVectors
    if not os.path.isfile(path):
        raise helper.InputError(path, None, 'word vectors not found')
    try:
        if path.endswith('.kv'):
            return KeyedVectors.load(path)
        return KeyedVectors.load_word2vec_format(path, binary=path.endswith('.bin'),
                                                 unicode_errors='replace')
    except Exception as error:  # gensim raises anything from ValueError to UnpicklingError
        raise helper.InputError(path, None, 'cannot read word vectors: %s' % error) from None


def load_embedder(path):
    """The Embedder of the word vectors at `path` (.kv, .bin, .txt/.vec)."""
    return Embedder(read_keyed_vectors(path), os.path.abspath(path))


def word2vec_path(work_dir, dim):
    """Where the word2vec trained on the corpus is kept: embeddings/word2vec_<dim>.kv."""
    return os.path.join(paths.embeddings_dir(work_dir), 'word2vec_%d.kv' % dim)


def train_word2vec(sentences, dim, seed, path, epochs=WORD2VEC_EPOCHS):
    """Train word2vec (skip-gram, which suits small corpora) on `sentences`
    (lists of words) and save its KeyedVectors atomically. One worker thread:
    gensim is only reproducible single-threaded."""
    from gensim.models import Word2Vec
    if not sentences:
        raise helper.InputError(path, None, 'no transcript words to train word2vec on')
    # min_count=1: every transcript word should get a learned vector, not a random one.
    model = Word2Vec(sentences, vector_size=dim, min_count=1, sg=1, epochs=epochs, seed=seed,
                     workers=1)
    with helper.atomic_output(path) as tmp_path:
        # separately=[]: one file, so the atomic rename moves all of it.
        model.wv.save(tmp_path, separately=[])
    logging.info('Saved %d word vectors to %s', len(model.wv), path)


def frame_word_index(words, n_frames, step_seconds):
    """Index into `words` of the word overlapping each frame most, -1 where no
    word overlaps; ties go to the earlier word. Frame i is
    [i*step, (i+1)*step). Work is O(words + frames): each word is paired only
    with the frames it touches."""
    best = np.full(n_frames, -1, dtype=np.int64)
    if not words or n_frames == 0:
        return best
    starts = np.array([w[0] for w in words], dtype=np.float64)
    ends = np.array([w[1] for w in words], dtype=np.float64)
    first = np.clip(np.floor(starts / step_seconds), 0, n_frames).astype(np.int64)
    stop = np.clip(np.ceil(ends / step_seconds), 0, n_frames).astype(np.int64)
    spans = np.maximum(stop - first, 0)
    word = np.repeat(np.arange(len(words)), spans)
    frame = first[word] + np.arange(len(word)) - np.repeat(np.cumsum(spans) - spans, spans)
    overlap = (np.minimum(ends[word], (frame + 1) * step_seconds)
               - np.maximum(starts[word], frame * step_seconds))
    keep = overlap > 0
    if not keep.any():     # every word lies outside the frames
        return best
    word, frame, overlap = word[keep], frame[keep], overlap[keep]
    order = np.lexsort((word, -overlap, frame))
    frame, word = frame[order], word[order]
    first_of_frame = np.r_[True, frame[1:] != frame[:-1]]
    best[frame[first_of_frame]] = word[first_of_frame]
    return best


def frame_embeddings(words, n_frames, step_seconds, embedder):
    """[n_frames, embedder.dim] float32: the vector of the word that overlaps
    each frame most, zeros where nobody speaks. `words`: [(start, end, word)]
    in seconds."""
    index = frame_word_index(words, n_frames, step_seconds)
    embeddings = np.zeros((n_frames, embedder.dim), dtype=np.float32)
    speech = index >= 0
    if speech.any():
        used = np.unique(index[speech])
        vectors = embedder.vectors([words[i][2] for i in used])
        embeddings[speech] = vectors[np.searchsorted(used, index[speech])]
    return embeddings
