"""data_generator.py: framing, word-to-frame assignment, embeddings (formats,
word2vec training, deterministic unknown words) and whole runs over a
hand-written corpus: exact records, dataset.json, resuming, bad input."""

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from absl import flags
from absl.testing import flagsaver

import data_generator
import helper

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATE = 4000            # --sample_rate of the runs below: 1000 samples per frame
FRAME = 1000
STEP = data_generator.STEP_SECONDS


# --------------------------------------------------------------------------
# Framing and word assignment
# --------------------------------------------------------------------------
def test_frame_samples_must_split_into_pooling_blocks():
    assert data_generator.frame_samples_for(16000) == 4000
    assert data_generator.frame_samples_for(1000) == 250
    for bad in (22050, 44100, 16500, 0):
        with pytest.raises(ValueError, match='multiple of 1000 Hz'):
            data_generator.frame_samples_for(bad)


def test_frame_audio_pads_only_the_final_partial_frame():
    samples = np.arange(1, 11, dtype=np.float32)
    frames = data_generator.frame_audio(samples, 4, 3)
    assert frames.dtype == np.float32 and frames.shape == (3, 4)
    assert np.array_equal(frames.ravel(), np.r_[samples, 0, 0])
    assert np.array_equal(data_generator.frame_audio(samples, 4, 2).ravel(), samples[:8])


def brute_force_best_word(words, n_frames, step):
    """Reference: per frame, the word with the largest positive overlap, the
    earlier one on ties, -1 if none."""
    best = []
    for frame in range(n_frames):
        low, high = frame * step, (frame + 1) * step
        choice, most = -1, 0.0
        for index, (start, end, _) in enumerate(words):
            overlap = min(end, high) - max(start, low)
            if overlap > most:
                choice, most = index, overlap
        best.append(choice)
    return np.array(best)


def test_each_frame_gets_the_word_overlapping_it_most():
    words = [(0.10, 0.30, 'a'),    # frame 0: 0.15 s, frame 1: 0.05 s
             (0.30, 0.45, 'b'),    # frame 1: 0.15 s -> wins frame 1
             (0.60, 1.40, 'c'),    # frames 2..5
             (1.30, 1.50, 'd'),    # frame 5: 0.2 s vs c 0.1 s -> d
             (2.00, 2.10, 'e')]    # frame 8, beyond n_frames=8: ignored
    index = data_generator.frame_word_index(words, 8, STEP)
    assert index.tolist() == [0, 1, 2, 2, 2, 3, -1, -1]


def test_word_assignment_matches_brute_force_on_random_words():
    rng = np.random.default_rng(1)
    for _ in range(20):
        starts = np.round(rng.uniform(0, 10, size=rng.integers(0, 40)), 2)
        words = [(s, s + round(rng.uniform(0, 1.2), 2), 'w') for s in starts]
        n_frames = int(rng.integers(1, 45))
        assert np.array_equal(data_generator.frame_word_index(words, n_frames, STEP),
                              brute_force_best_word(words, n_frames, STEP))


class FakeEmbedder:
    dim = 3

    def vectors(self, words):
        return np.array([[len(w), ord(w[0]), 1] for w in words], dtype=np.float32)


def test_frame_embeddings_are_word_vectors_and_zeros_in_silence():
    words = [(0.0, 0.2, 'ab'), (0.6, 0.7, 'xyz')]
    embeddings = data_generator.frame_embeddings(words, 4, STEP, FakeEmbedder())
    assert embeddings.dtype == np.float32
    assert embeddings.tolist() == [[2, 97, 1], [0, 0, 0], [3, 120, 1], [0, 0, 0]]


# --------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------
@pytest.fixture(scope='module')
def small_vectors(tmp_path_factory):
    """The same 5 word vectors saved as .kv, word2vec text and word2vec binary."""
    from gensim.models import KeyedVectors
    directory = tmp_path_factory.mktemp('vectors')
    keyed_vectors = KeyedVectors(vector_size=6)
    keyed_vectors.add_vectors(['car', 'fast', 'Engine', 'red', 'seat'],
                              np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32))
    paths = {'kv': str(directory / 'v.kv'), 'txt': str(directory / 'v.txt'),
             'bin': str(directory / 'v.bin')}
    keyed_vectors.save(paths['kv'])
    keyed_vectors.save_word2vec_format(paths['txt'], binary=False)
    keyed_vectors.save_word2vec_format(paths['bin'], binary=True)
    return keyed_vectors, paths


def test_vectors_load_from_kv_text_and_binary_files(small_vectors):
    keyed_vectors, paths = small_vectors
    for path in paths.values():
        embedder = data_generator.load_embedder(path)
        assert embedder.dim == 6 and embedder.path == os.path.abspath(path)
        assert np.allclose(embedder.vector('fast'), keyed_vectors['fast'], atol=1e-6)
        # Words are looked up as written, then lower-cased.
        assert np.allclose(embedder.vector('CAR'), keyed_vectors['car'], atol=1e-6)
        assert embedder.is_known('Engine') and not embedder.is_known('engine')


def test_unreadable_vectors_name_the_file(tmp_path):
    path = tmp_path / 'broken.bin'
    path.write_bytes(b'not vectors')
    with pytest.raises(helper.InputError, match='broken.bin: cannot read word vectors'):
        data_generator.load_embedder(str(path))
    with pytest.raises(helper.InputError, match='missing.kv: word vectors not found'):
        data_generator.load_embedder(str(tmp_path / 'missing.kv'))


UNKNOWN_VECTOR_SCRIPT = '''
import data_generator
embedder = data_generator.load_embedder(%r)
print(' '.join(repr(float(v)) for v in embedder.vector('zorblax')))
'''


def test_unknown_words_get_the_same_vector_in_every_process(small_vectors):
    keyed_vectors, paths = small_vectors
    embedder = data_generator.load_embedder(paths['kv'])
    unknown = embedder.vector('zorblax')
    # A new process has a different str hash seed: the vector must not depend on it.
    output = subprocess.run([sys.executable, '-c', UNKNOWN_VECTOR_SCRIPT % paths['kv']],
                            cwd=REPO, capture_output=True, text=True, check=True,
                            env=dict(os.environ, PYTHONHASHSEED='123')).stdout
    assert np.array_equal(np.array(output.split(), dtype=np.float32), unknown)
    assert not embedder.is_known('zorblax')
    assert not np.allclose(unknown, embedder.vector('zorblay'))
    mean_norm = np.linalg.norm(keyed_vectors.vectors, axis=1).mean()
    assert np.linalg.norm(unknown) == pytest.approx(mean_norm, rel=1e-5)
    assert unknown.dtype == np.float32 and unknown.shape == (6,)


def test_word2vec_training_is_reproducible(tmp_path):
    sentences = [['the', 'car', 'is', 'fast'], ['a', 'red', 'car'], ['the', 'seat', 'is', 'soft']]
    sentences = sentences * 10
    paths = [str(tmp_path / name / 'w.kv') for name in ('one', 'two')]
    for path in paths:
        data_generator.train_word2vec(sentences, 12, 7, path)
    one, two = (data_generator.load_embedder(p) for p in paths)
    assert one.dim == 12
    for word in ('the', 'car', 'soft'):
        assert one.is_known(word)
        assert np.array_equal(one.vector(word), two.vector(word))


# --------------------------------------------------------------------------
# Whole runs over a hand-written corpus
# --------------------------------------------------------------------------
TRANSCRIPT = [(0.0, 2.0, 'The car is <filler> FAST.'), (2.5, 4.0, "I like the engine's sound")]


def write_recording(muse_dir, work_dir, recording_id, seconds, labels_rows, words,
                    file_rate=RATE, channels=1, rng=None):
    """Audio (float WAV), transcript, sync map and labels of one recording;
    returns the samples written."""
    rng = rng or np.random.default_rng(len(recording_id))
    samples = rng.uniform(-0.9, 0.9, size=(int(seconds * file_rate), channels))
    os.makedirs(os.path.join(muse_dir, 'audio'), exist_ok=True)
    soundfile.write(os.path.join(muse_dir, 'audio', recording_id + '.wav'),
                    samples.astype(np.float32), file_rate, subtype='FLOAT')
    helper.write_csv(helper.transcript_path(muse_dir, recording_id),
                     ['start', 'end', 'sentence'], TRANSCRIPT)
    helper.write_csv(helper.sync_map_path(work_dir, recording_id),
                     ['id', 'start', 'end', 'word'],
                     [('s0w%d' % i, s, e, w) for i, (s, e, w) in enumerate(words)])
    helper.write_csv(helper.label_path(work_dir, recording_id),
                     ['timestamp', 'arousal', 'valence'], labels_rows)
    return samples.astype(np.float32)


def label_rows(n_rows, rng):
    return [(i * 250, round(rng.uniform(-1, 1), 4), round(rng.uniform(-1, 1), 4))
            for i in range(n_rows)]


WORDS = [(0.1, 0.4, 'the'), (0.4, 0.9, 'car'), (1.2, 1.3, 'is'), (1.3, 2.0, 'fast'),
         (2.6, 3.1, 'zorblax'), (3.1, 3.9, 'engine\'s')]


@pytest.fixture
def corpus(tmp_path):
    """rec_a (train): 5.1 s at 4 kHz mono, 25 label rows (the last 4 start
    after the audio ends); rec_b (devel): 3 s at 8 kHz stereo; rec_c (test)."""
    muse_dir, work_dir = str(tmp_path / 'MuSe-CaR'), str(tmp_path / 'work')
    rng = np.random.default_rng(0)
    recordings = {
        'rec_a': dict(portion='train', samples=write_recording(
            muse_dir, work_dir, 'rec_a', 5.1, label_rows(25, rng), WORDS)),
        'rec_b': dict(portion='devel', samples=write_recording(
            muse_dir, work_dir, 'rec_b', 3.0, label_rows(12, rng), WORDS[:3],
            file_rate=8000, channels=2)),
        'rec_c': dict(portion='test', samples=write_recording(
            muse_dir, work_dir, 'rec_c', 2.0, label_rows(8, rng), WORDS[2:4])),
    }
    for recording_id, recording in recordings.items():
        recording['labels'] = helper.read_table(
            helper.label_path(work_dir, recording_id),
            [('timestamp', int), ('arousal', float), ('valence', float)])
    helper.write_csv(helper.partition_path(work_dir), ['Id', 'Proposal'],
                     [(i, r['portion']) for i, r in recordings.items()])
    return muse_dir, work_dir, recordings


def run_generator(muse_dir, work_dir, *extra):
    """data_generator.main in this process with these flags; returns its exit status."""
    argv = ['data_generator.py', '--muse_dir', muse_dir, '--work_dir', work_dir,
            '--sample_rate', str(RATE), '--embedding_dim', '16', '--workers', '1',
            '--seed', '0'] + list(extra)
    with flagsaver.flagsaver():
        flags.FLAGS.unparse_flags()
        flags.FLAGS(argv)
        return data_generator.main([])


def record_path(work_dir, portion, recording_id):
    return os.path.join(helper.tfrecords_dir(work_dir), portion, recording_id + '.tfrecords')


def test_run_writes_exact_records_and_dataset_info(corpus):
    muse_dir, work_dir, recordings = corpus
    assert run_generator(muse_dir, work_dir) == 0

    info = helper.read_json(os.path.join(helper.tfrecords_dir(work_dir), 'dataset.json'))
    vectors = data_generator.word2vec_path(work_dir, 16)
    assert info['sample_rate'] == RATE and info['frame_samples'] == FRAME
    assert info['label_step_ms'] == 250 and info['label_names'] == ['arousal', 'valence']
    assert info['embedding_dim'] == 16 and info['embeddings'] == os.path.abspath(vectors)
    assert info['partition'] == {'train': ['rec_a'], 'devel': ['rec_b'], 'test': ['rec_c']}
    assert info['partition_file'] == os.path.abspath(helper.partition_path(work_dir))
    # 5.1 s = 20 whole frames + a partial one; the 4 later label rows are dropped.
    assert info['recordings'] == {'rec_a': 21, 'rec_b': 12, 'rec_c': 8}

    embedder = data_generator.load_embedder(vectors)
    for word in ('the', 'car', 'fast', 'sound', "engine's"):
        assert embedder.is_known(word), word  # trained on the normalised transcripts

    arrays = data_generator.read_tfrecord(record_path(work_dir, 'train', 'rec_a'), FRAME, 16)
    samples = recordings['rec_a']['samples'][:, 0]
    labels = np.array(recordings['rec_a']['labels'][:21], dtype=np.float64)
    assert arrays['id'] == 'rec_a'
    assert np.array_equal(arrays['timestamps'], labels[:, 0].astype(np.int64))
    assert np.array_equal(arrays['labels'], labels[:, 1:].astype(np.float32))
    assert np.array_equal(arrays['audio'][:20].ravel(), samples[:20 * FRAME])
    assert np.array_equal(arrays['audio'][20, :400], samples[20 * FRAME:])
    assert not np.any(arrays['audio'][20, 400:])
    expected_word = brute_force_best_word(WORDS, 21, STEP)
    for frame, word in enumerate(expected_word):
        expected = embedder.vector(WORDS[word][2]) if word >= 0 else np.zeros(16)
        assert np.array_equal(arrays['embeddings'][frame], expected), frame

    resampled = data_generator.read_tfrecord(record_path(work_dir, 'devel', 'rec_b'), FRAME, 16)
    assert resampled['audio'].shape == (12, FRAME)


def test_rerun_skips_finished_records_and_overwrite_rewrites_them(corpus):
    muse_dir, work_dir, _ = corpus
    assert run_generator(muse_dir, work_dir) == 0
    paths = [record_path(work_dir, 'train', 'rec_a'), data_generator.word2vec_path(work_dir, 16)]
    os.remove(record_path(work_dir, 'test', 'rec_c'))
    before = [os.stat(p).st_mtime_ns for p in paths]
    assert run_generator(muse_dir, work_dir) == 0
    assert [os.stat(p).st_mtime_ns for p in paths] == before
    assert os.path.isfile(record_path(work_dir, 'test', 'rec_c'))
    info = helper.read_json(os.path.join(helper.tfrecords_dir(work_dir), 'dataset.json'))
    assert info['recordings'] == {'rec_a': 21, 'rec_b': 12, 'rec_c': 8}
    assert run_generator(muse_dir, work_dir, '--overwrite') == 0
    assert all(os.stat(p).st_mtime_ns != t for p, t in zip(paths, before))


def test_changed_settings_need_overwrite(corpus, capsys):
    muse_dir, work_dir, _ = corpus
    assert run_generator(muse_dir, work_dir) == 0
    assert run_generator(muse_dir, work_dir, '--sample_rate', '8000') == 1
    assert 'made with sample_rate=4000' in capsys.readouterr().err
    assert run_generator(muse_dir, work_dir, '--sample_rate', '8000', '--overwrite') == 0
    arrays = data_generator.read_tfrecord(record_path(work_dir, 'train', 'rec_a'), 2000, 16)
    assert arrays['audio'].shape == (21, 2000)


def test_recording_moved_to_another_portion_leaves_its_old_directory(corpus):
    muse_dir, work_dir, _ = corpus
    assert run_generator(muse_dir, work_dir) == 0
    helper.write_csv(helper.partition_path(work_dir), ['Id', 'Proposal'],
                     [('rec_a', 'devel'), ('rec_b', 'devel'), ('rec_c', 'test')])
    assert run_generator(muse_dir, work_dir) == 0
    assert not os.path.exists(record_path(work_dir, 'train', 'rec_a'))
    assert os.path.isfile(record_path(work_dir, 'devel', 'rec_a'))
    info = helper.read_json(os.path.join(helper.tfrecords_dir(work_dir), 'dataset.json'))
    assert info['partition'] == {'train': [], 'devel': ['rec_a', 'rec_b'], 'test': ['rec_c']}


def test_bad_recordings_are_reported_and_the_others_written(corpus, capsys):
    muse_dir, work_dir, _ = corpus
    rng = np.random.default_rng(5)
    write_recording(muse_dir, work_dir, 'nan_labels', 2.0,
                    label_rows(3, rng) + [(750, 'nan', 0.5)], WORDS)
    write_recording(muse_dir, work_dir, 'short', 0.2, label_rows(1, rng), [])
    write_recording(muse_dir, work_dir, 'no_sync', 2.0, label_rows(8, rng), WORDS)
    os.remove(helper.sync_map_path(work_dir, 'no_sync'))
    write_recording(muse_dir, work_dir, 'no_audio', 2.0, label_rows(8, rng), WORDS)
    os.remove(os.path.join(muse_dir, 'audio', 'no_audio.wav'))
    write_recording(muse_dir, work_dir, 'off_grid', 2.0,
                    label_rows(2, rng) + [(600, 0.1, 0.1)], WORDS)
    write_recording(muse_dir, work_dir, 'backwards', 2.0, label_rows(8, rng), [])
    with open(helper.sync_map_path(work_dir, 'backwards'), 'w') as handle:
        handle.write('id,start,end,word\ns0w0,0.1,0.5,the\n\ns0w1,0.9,0.6,car\n')
    bad = ['nan_labels', 'short', 'no_sync', 'no_audio', 'off_grid', 'backwards']
    helper.write_csv(helper.partition_path(work_dir), ['Id', 'Proposal'],
                     [('rec_a', 'train'), ('rec_b', 'devel'), ('rec_c', 'test')]
                     + [(i, 'train') for i in bad])

    assert run_generator(muse_dir, work_dir) == 1
    err = capsys.readouterr().err
    assert "nan_labels.csv, row 5: column 'arousal': 'nan' is not a finite number" in err
    assert 'short.wav: audio lasts 0.200 s, shorter than one 250 ms frame' in err
    assert 'no_sync.csv: file not found' in err
    assert 'no_audio.wav: no audio file for recording no_audio' in err
    assert 'off_grid.csv, row 4: timestamp 600 ms is not a non-negative multiple of 250' in err
    assert "backwards.csv, row 4: word 'car' spans 0.9..0.6 s" in err
    assert '6 recordings failed' in err
    info = helper.read_json(os.path.join(helper.tfrecords_dir(work_dir), 'dataset.json'))
    assert info['partition'] == {'train': ['rec_a'], 'devel': ['rec_b'], 'test': ['rec_c']}
    for recording_id in bad:
        assert not os.path.exists(record_path(work_dir, 'train', recording_id))


def test_command_line_runs_in_parallel_and_validates_the_sample_rate(corpus):
    muse_dir, work_dir, _ = corpus
    command = [sys.executable, 'data_generator.py', '--muse_dir', muse_dir,
               '--work_dir', work_dir, '--embedding_dim', '8']
    bad_rate = subprocess.run(command + ['--sample_rate', '22050'], cwd=REPO,
                              capture_output=True, text=True)
    assert bad_rate.returncode != 0 and 'multiple of 1000 Hz' in bad_rate.stderr
    run = subprocess.run(command + ['--sample_rate', str(RATE), '--workers', '2'], cwd=REPO,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert 'frames/s' in run.stderr and '1 distinct unknown' in run.stderr
    info = helper.read_json(os.path.join(helper.tfrecords_dir(work_dir), 'dataset.json'))
    assert info['recordings'] == {'rec_a': 21, 'rec_b': 12, 'rec_c': 8}
