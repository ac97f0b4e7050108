"""Shared pytest fixtures.

`tiny_dataset` is a small TFRecord dataset built from synthetic arrays by
data_generator's own writer functions (no espeak, no alignment), so tests of
training, evaluation and prediction run in seconds. `tiny_recordings` gives
the arrays it was built from.
"""

import os
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import data_generator  # noqa: E402  (needs the repository on sys.path)
import helper  # noqa: E402

TINY_SAMPLE_RATE = 1000            # 250 samples per 250 ms frame
TINY_EMBEDDING_DIM = 8
TINY_SEED = 0
# id -> (portion, frames)
TINY_LAYOUT = {
    'tiny_train_a': ('train', 64),
    'tiny_train_b': ('train', 48),
    'tiny_train_c': ('train', 80),
    'tiny_devel_a': ('devel', 56),
    'tiny_test_a': ('test', 40),
}
TINY_VOCABULARY = ('fast', 'slow', 'great', 'awful', 'engine', 'seat', 'brake', 'quiet',
                   'loud', 'smooth', 'rough', 'price')


def tiny_word_vectors():
    """gensim KeyedVectors of TINY_VOCABULARY and the unit direction that
    decides valence (valence = tanh(embedding . direction))."""
    from gensim.models import KeyedVectors
    rng = np.random.default_rng(TINY_SEED)
    vectors = rng.standard_normal((len(TINY_VOCABULARY), TINY_EMBEDDING_DIM)).astype(np.float32)
    direction = rng.standard_normal(TINY_EMBEDDING_DIM)
    direction /= np.linalg.norm(direction)
    keyed_vectors = KeyedVectors(vector_size=TINY_EMBEDDING_DIM)
    keyed_vectors.add_vectors(list(TINY_VOCABULARY), vectors)
    return keyed_vectors, direction


def _tiny_words(rng, n_frames):
    """Words of 0.5-1.25 s separated by 0-1 s pauses, as (start, end, word) in seconds."""
    words, time = [], rng.uniform(0, 1)
    total = n_frames * data_generator.STEP_SECONDS
    while True:
        duration = rng.uniform(0.5, 1.25)
        if time + duration > total:
            return words
        words.append((round(time, 3), round(time + duration, 3),
                      str(rng.choice(TINY_VOCABULARY))))
        time += duration + rng.uniform(0, 1)


def make_tiny_recordings(embedder, direction):
    """{id: dict(portion, samples, words, timestamps, audio, embeddings, labels)}.

    Arousal is set by loudness: each frame's waveform is noise whose standard
    deviation `loud` is piecewise constant (runs of 3-9 frames) in [0.05, 1],
    and arousal = 2 * (loud - 0.05) / 0.95 - 1. Valence is set by the words:
    valence = tanh(embedding . direction), 0 in pauses (zero embedding).
    The raw waveform stops 100 samples into its last frame, which the writer
    zero-pads, like a real recording."""
    frame_samples = data_generator.frame_samples_for(TINY_SAMPLE_RATE)
    recordings = {}
    for index, (recording_id, (portion, n_frames)) in enumerate(sorted(TINY_LAYOUT.items())):
        rng = np.random.default_rng([TINY_SEED, index])
        runs = rng.integers(3, 10, size=n_frames)
        levels = rng.uniform(0.05, 1.0, size=n_frames)
        loud = np.repeat(levels, runs)[:n_frames]
        noise = rng.standard_normal((n_frames, frame_samples))
        samples = (noise * loud[:, None]).astype(np.float32).ravel()[:-(frame_samples - 100)]
        words = _tiny_words(rng, n_frames)
        embeddings = data_generator.frame_embeddings(words, n_frames,
                                                     data_generator.STEP_SECONDS, embedder)
        arousal = 2 * (loud - 0.05) / 0.95 - 1
        valence = np.tanh(embeddings @ direction)
        recordings[recording_id] = {
            'portion': portion,
            'samples': samples,
            'words': words,
            'timestamps': np.arange(n_frames, dtype=np.int64) * helper.LABEL_STEP_MS,
            'audio': data_generator.frame_audio(samples, frame_samples, n_frames),
            'embeddings': embeddings,
            'labels': np.stack([arousal, valence], axis=1).astype(np.float32),
        }
    return recordings


def build_tiny_dataset(work_dir):
    """Write the tiny dataset under `work_dir` (tfrecords/ and embeddings/);
    returns (tfrecords dir, recordings of make_tiny_recordings)."""
    keyed_vectors, direction = tiny_word_vectors()
    vectors_path = os.path.join(helper.embeddings_dir(work_dir), 'tiny_%d.kv' % TINY_EMBEDDING_DIM)
    os.makedirs(os.path.dirname(vectors_path), exist_ok=True)
    keyed_vectors.save(vectors_path, separately=[])
    embedder = data_generator.load_embedder(vectors_path)
    recordings = make_tiny_recordings(embedder, direction)

    dataset_dir = helper.tfrecords_dir(work_dir)
    for recording_id, recording in recordings.items():
        data_generator.write_tfrecord(
            os.path.join(dataset_dir, recording['portion'], recording_id + '.tfrecords'),
            recording_id, recording['timestamps'], recording['audio'],
            recording['embeddings'], recording['labels'])
    partition = {portion: [i for i, r in recordings.items() if r['portion'] == portion]
                 for portion in helper.PORTIONS}
    helper.write_json(os.path.join(dataset_dir, data_generator.DATASET_INFO),
                      data_generator.dataset_info(
                          TINY_SAMPLE_RATE, TINY_EMBEDDING_DIM, embedder.path, partition,
                          {i: len(r['timestamps']) for i, r in recordings.items()}))
    return dataset_dir, recordings


@pytest.fixture(scope='session')
def _tiny(tmp_path_factory):
    return build_tiny_dataset(str(tmp_path_factory.mktemp('tiny_work')))


@pytest.fixture(scope='session')
def tiny_dataset(_tiny):
    """Path (str) of a small tfrecords directory, laid out as data_generator.py
    writes it: <dir>/{train,devel,test}/<Id>.tfrecords and <dir>/dataset.json.

    Five synthetic recordings (TINY_LAYOUT): 3 train (64, 48, 80 frames), 1
    devel (56), 1 test (40); sample_rate 1000 Hz, so frame_samples S = 250;
    embedding_dim E = 8. Labels are a learnable function of the inputs:
    arousal follows the loudness of the frame's audio, valence the frame's
    word embedding (0 in pauses); see make_tiny_recordings. dataset.json's
    'embeddings' is a real gensim .kv file (<dir>/../embeddings/tiny_8.kv)
    holding the 12 words of TINY_VOCABULARY, for data_generator.load_embedder
    in predict-style tests. Session-scoped: do not modify it."""
    return _tiny[0]


@pytest.fixture(scope='session')
def tiny_recordings(_tiny):
    """The arrays `tiny_dataset` was written from (see make_tiny_recordings):
    {id: {'portion', 'samples' (raw waveform at 1000 Hz), 'words'
    [(start, end, word)] s, 'timestamps' [N] ms, 'audio' [N, 250],
    'embeddings' [N, 8], 'labels' [N, 2] (arousal, valence)}}."""
    return _tiny[1]
