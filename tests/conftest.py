"""Shared pytest fixtures.

`tiny_dataset` is a small TFRecord dataset of segments `<Id>_<seg>` built
from synthetic arrays by the library's own writers (ser.records, ser.dataset;
no espeak, no alignment), so tests of training, evaluation and prediction run
in seconds. `tiny_recordings` gives the arrays it was built from.
"""

import os
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from ser import embeddings as word_embeddings  # noqa: E402
from ser import defaults
from ser import paths  # noqa: E402
from ser import records  # noqa: E402
from ser.dataset import DatasetInfo  # noqa: E402


def pytest_addoption(parser):
    parser.addoption('--screenshot', metavar='PNG', default=None,
                     help='Where tests/test_live_page.py saves a screenshot of the page with '
                          'an analysed file (docs/live-page.png is one); default: nowhere.')


TINY_SAMPLE_RATE = 1000            # 250 samples per 250 ms frame
TINY_EMBEDDING_DIM = 8
TINY_SEED = 0
# segment <Id>_<seg> -> (portion, frames); the partition is by video
TINY_LAYOUT = {
    '1_0': ('train', 64),
    '1_1': ('train', 48),
    '2_0': ('train', 80),
    '3_0': ('devel', 32),
    '3_1': ('devel', 24),
    '4_0': ('test', 40),
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
    total = n_frames * records.STEP_SECONDS
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
    frame_samples = records.frame_samples_for(TINY_SAMPLE_RATE)
    recordings = {}
    for index, (name, (portion, n_frames)) in enumerate(sorted(TINY_LAYOUT.items())):
        rng = np.random.default_rng([TINY_SEED, index])
        runs = rng.integers(3, 10, size=n_frames)
        levels = rng.uniform(0.05, 1.0, size=n_frames)
        loud = np.repeat(levels, runs)[:n_frames]
        noise = rng.standard_normal((n_frames, frame_samples))
        samples = (noise * loud[:, None]).astype(np.float32).ravel()[:-(frame_samples - 100)]
        words = _tiny_words(rng, n_frames)
        embeddings = word_embeddings.frame_embeddings(words, n_frames, records.STEP_SECONDS,
                                                      embedder)
        arousal = 2 * (loud - 0.05) / 0.95 - 1
        valence = np.tanh(embeddings @ direction)
        recordings[name] = {
            'portion': portion,
            'samples': samples,
            'words': words,
            'timestamps': np.arange(n_frames, dtype=np.int64) * paths.LABEL_STEP_MS,
            'audio': records.frame_audio(samples, frame_samples, n_frames),
            'embeddings': embeddings,
            'labels': np.stack([arousal, valence], axis=1).astype(np.float32),
        }
    return recordings


def build_tiny_dataset(work_dir):
    """Write the tiny dataset under `work_dir` (tfrecords/ and embeddings/);
    returns (tfrecords dir, recordings of make_tiny_recordings)."""
    keyed_vectors, direction = tiny_word_vectors()
    vectors_path = os.path.join(paths.embeddings_dir(work_dir), 'tiny_%d.kv' % TINY_EMBEDDING_DIM)
    os.makedirs(os.path.dirname(vectors_path), exist_ok=True)
    keyed_vectors.save(vectors_path, separately=[])
    embedder = word_embeddings.load_embedder(vectors_path)
    recordings = make_tiny_recordings(embedder, direction)

    dataset_dir = paths.tfrecords_dir(work_dir)
    for name, recording in recordings.items():
        records.write_tfrecord(
            os.path.join(dataset_dir, recording['portion'], name + '.tfrecords'),
            name, recording['timestamps'], recording['audio'],
            recording['embeddings'], recording['labels'])
    partition = {portion: [i for i, r in recordings.items() if r['portion'] == portion]
                 for portion in defaults.PORTIONS}
    DatasetInfo.create(TINY_SAMPLE_RATE, TINY_EMBEDDING_DIM, embedder.path, partition,
                       {i: len(r['timestamps']) for i, r in recordings.items()}).save(dataset_dir)
    return dataset_dir, recordings


@pytest.fixture(scope='session')
def _tiny(tmp_path_factory):
    return build_tiny_dataset(str(tmp_path_factory.mktemp('tiny_work')))


@pytest.fixture(scope='session')
def tiny_dataset(_tiny):
    """Path (str) of a small tfrecords directory, laid out as data_generator.py
    writes it: <dir>/{train,devel,test}/<Id>_<seg>.tfrecords and <dir>/dataset.json.

    Six synthetic segments of four videos (TINY_LAYOUT): train 1_0, 1_1, 2_0
    (64, 48, 80 frames), devel 3_0, 3_1 (32, 24), test 4_0 (40); sample_rate
    1000 Hz, so frame_samples S = 250;
    embedding_dim E = 8. Labels are a learnable function of the inputs:
    arousal follows the loudness of the frame's audio, valence the frame's
    word embedding (0 in pauses); see make_tiny_recordings. dataset.json's
    'embeddings' is a real gensim .kv file (<dir>/../embeddings/tiny_8.kv)
    holding the 12 words of TINY_VOCABULARY, for ser.embeddings.load_embedder
    in predict-style tests (dataset.json stores it as ../embeddings/tiny_8.kv). Session-scoped: do not modify it."""
    return _tiny[0]


@pytest.fixture(scope='session')
def tiny_recordings(_tiny):
    """The arrays `tiny_dataset` was written from (see make_tiny_recordings):
    {segment name: {'portion', 'samples' (raw waveform at 1000 Hz), 'words'
    [(start, end, word)] s, 'timestamps' [N] ms, 'audio' [N, 250],
    'embeddings' [N, 8], 'labels' [N, 2] (arousal, valence)}}."""
    return _tiny[1]
