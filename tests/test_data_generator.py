"""data_generator.py and its library (ser.records, ser.embeddings,
ser.generation): framing, word-to-frame assignment, embeddings (formats,
word2vec training, deterministic unknown words) and whole runs over a
hand-written corpus in MuSe-CaR's layout, per segment: exact records,
dataset.json, resuming, bad input."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile

import helper
from ser import embeddings as word_embeddings
from ser import generation, records
from ser import paths
from ser.dataset import DatasetInfo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATE = 4000            # --sample_rate of the runs below: 1000 samples per frame
FRAME = 1000
STEP = records.STEP_SECONDS


# --------------------------------------------------------------------------
# Framing and word assignment
# --------------------------------------------------------------------------
def test_frame_samples_must_split_into_pooling_blocks():
    assert records.frame_samples_for(16000) == 4000
    assert records.frame_samples_for(1000) == 250
    for bad in (22050, 44100, 16500, 0):
        with pytest.raises(ValueError, match='multiple of 1000 Hz'):
            records.frame_samples_for(bad)


def test_frame_audio_pads_only_the_final_partial_frame():
    samples = np.arange(1, 11, dtype=np.float32)
    frames = records.frame_audio(samples, 4, 3)
    assert frames.dtype == np.float32 and frames.shape == (3, 4)
    assert np.array_equal(frames.ravel(), np.r_[samples, 0, 0])
    assert np.array_equal(records.frame_audio(samples, 4, 2).ravel(), samples[:8])


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
    index = word_embeddings.frame_word_index(words, 8, STEP)
    assert index.tolist() == [0, 1, 2, 2, 2, 3, -1, -1]


def test_word_assignment_matches_brute_force_on_random_words():
    rng = np.random.default_rng(1)
    for _ in range(20):
        starts = np.round(rng.uniform(0, 10, size=rng.integers(0, 40)), 2)
        words = [(s, s + round(rng.uniform(0, 1.2), 2), 'w') for s in starts]
        n_frames = int(rng.integers(1, 45))
        assert np.array_equal(word_embeddings.frame_word_index(words, n_frames, STEP),
                              brute_force_best_word(words, n_frames, STEP))


class FakeEmbedder:
    dim = 3

    def vectors(self, words):
        return np.array([[len(w), ord(w[0]), 1] for w in words], dtype=np.float32)


def test_frame_embeddings_are_word_vectors_and_zeros_in_silence():
    words = [(0.0, 0.2, 'ab'), (0.6, 0.7, 'xyz')]
    embeddings = word_embeddings.frame_embeddings(words, 4, STEP, FakeEmbedder())
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
        embedder = word_embeddings.load_embedder(path)
        assert embedder.dim == 6 and embedder.path == os.path.abspath(path)
        assert np.allclose(embedder.vector('fast'), keyed_vectors['fast'], atol=1e-6)
        # Words are looked up as written, then lower-cased.
        assert np.allclose(embedder.vector('CAR'), keyed_vectors['car'], atol=1e-6)
        assert embedder.is_known('Engine') and not embedder.is_known('engine')


def test_unreadable_vectors_name_the_file(tmp_path):
    path = tmp_path / 'broken.bin'
    path.write_bytes(b'not vectors')
    with pytest.raises(helper.InputError, match='broken.bin: cannot read word vectors'):
        word_embeddings.load_embedder(str(path))
    with pytest.raises(helper.InputError, match='missing.kv: word vectors not found'):
        word_embeddings.load_embedder(str(tmp_path / 'missing.kv'))


UNKNOWN_VECTOR_SCRIPT = '''
from ser import embeddings as word_embeddings
embedder = word_embeddings.load_embedder(%r)
print(' '.join(repr(float(v)) for v in embedder.vector('zorblax')))
'''


def test_unknown_words_get_the_same_vector_in_every_process(small_vectors):
    keyed_vectors, paths = small_vectors
    embedder = word_embeddings.load_embedder(paths['kv'])
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
        word_embeddings.train_word2vec(sentences, 12, 7, path)
    one, two = (word_embeddings.load_embedder(p) for p in paths)
    assert one.dim == 12
    for word in ('the', 'car', 'soft'):
        assert one.is_known(word)
        assert np.array_equal(one.vector(word), two.vector(word))


# --------------------------------------------------------------------------
# Whole runs over a hand-written corpus in MuSe-CaR's layout
# --------------------------------------------------------------------------
def write_segment(muse_dir, work_dir, name, seconds, label_rows, words, file_rate=RATE,
                  channels=1):
    """A segment's audio (float WAV under audio_segments/<Id>/), its sync map
    and its labels; returns the samples written."""
    rng = np.random.default_rng(sum(map(ord, name)))
    samples = rng.uniform(-0.9, 0.9, size=(int(seconds * file_rate), channels))
    audio_dir = paths.MuseLayout(muse_dir).audio_dir(paths.video_of(name))
    os.makedirs(audio_dir, exist_ok=True)
    soundfile.write(os.path.join(audio_dir, name + '.wav'), samples.astype(np.float32),
                    file_rate, subtype='FLOAT')
    helper.write_csv(paths.sync_map_path(work_dir, name), ['id', 'start', 'end', 'word'],
                     [('%s_w%d' % (name, i), s, e, w) for i, (s, e, w) in enumerate(words)])
    helper.write_csv(paths.label_path(work_dir, name), ['timestamp', 'arousal', 'valence'],
                     label_rows)
    return samples.astype(np.float32)


def label_rows(n_rows, rng):
    return [(i * 250, round(rng.uniform(-1, 1), 4), round(rng.uniform(-1, 1), 4))
            for i in range(n_rows)]


def write_partition(work_dir, videos):
    helper.write_csv(paths.partition_path(work_dir), ['Id', 'Proposal'], sorted(videos.items()))


WORDS = [(0.1, 0.4, 'the'), (0.4, 0.9, 'car'), (1.2, 1.3, 'is'), (1.3, 2.0, 'fast'),
         (2.6, 3.1, 'zorblax'), (3.1, 3.9, 'engine\'s')]
# segment -> frames, one per label row
FRAMES = {'1_0': 22, '1_1': 9, '2_0': 13, '3_0': 9}


@pytest.fixture
def corpus(tmp_path):
    """Video 1 (train): 1_0, 5.1 s at 4 kHz mono, 22 label rows (0..5.25 s, so
    the last frames run past the audio), and 1_1 (2 s) whose sync map is
    header-only (no transcript); video 2 (devel): 2_0, 3 s at 8 kHz stereo;
    video 3 (test): 3_0, 2 s. Mac litter beside the label files."""
    muse_dir, work_dir = str(tmp_path / 'MuSe-CaR'), str(tmp_path / 'work')
    rng = np.random.default_rng(0)
    segments = {
        '1_0': write_segment(muse_dir, work_dir, '1_0', 5.1, label_rows(22, rng), WORDS),
        '1_1': write_segment(muse_dir, work_dir, '1_1', 2.0, label_rows(9, rng), []),
        '2_0': write_segment(muse_dir, work_dir, '2_0', 3.0, label_rows(13, rng), WORDS[:3],
                             file_rate=8000, channels=2),
        '3_0': write_segment(muse_dir, work_dir, '3_0', 2.0, label_rows(9, rng), WORDS[2:4]),
    }
    for litter in ('.DS_Store', '._1_0.csv'):
        with open(os.path.join(paths.labels_dir(work_dir), '1', litter), 'wb') as handle:
            handle.write(b'\x00\x05\x16')
    write_partition(work_dir, {'1': 'train', '2': 'devel', '3': 'test'})
    return muse_dir, work_dir, segments


def generate(muse_dir, work_dir, **settings):
    """ser.generation.generate with this module's settings; returns (Run, exit status)."""
    settings = dict(dict(embedding_dim=16, sample_rate=RATE, workers=1, seed=0), **settings)
    run = generation.generate(paths.MuseLayout(muse_dir), work_dir, **settings)
    return run, generation.log_summary(run)


def record_path(work_dir, portion, name):
    return os.path.join(paths.tfrecords_dir(work_dir), portion, name + '.tfrecords')


def read_info(work_dir):
    return DatasetInfo.load(paths.tfrecords_dir(work_dir))


def test_run_writes_one_exact_record_per_segment_and_dataset_info(corpus, caplog):
    muse_dir, work_dir, samples = corpus
    caplog.set_level('INFO')
    _, status = generate(muse_dir, work_dir)
    assert status == 0

    stored = helper.read_json(os.path.join(paths.tfrecords_dir(work_dir), 'dataset.json'))
    assert stored['embeddings'] == os.path.join('..', 'embeddings', 'word2vec_16.kv')
    assert stored['partition_file'] == os.path.join('..', 'partition.csv')
    info = read_info(work_dir)
    vectors = word_embeddings.word2vec_path(work_dir, 16)
    assert info.sample_rate == RATE and info.frame_samples == FRAME
    assert info.label_step_ms == 250 and info.label_names == ['arousal', 'valence']
    assert info.embedding_dim == 16 and info.embeddings_path == os.path.abspath(vectors)
    assert info.partition == {'train': ['1_0', '1_1'], 'devel': ['2_0'], 'test': ['3_0']}
    assert info.recordings == FRAMES
    assert 'segments without words (zero embeddings): 1_1' in caplog.text

    embedder = word_embeddings.load_embedder(vectors)
    for word in ('the', 'car', 'fast', 'zorblax', "engine's"):
        assert embedder.is_known(word), word  # trained on the words of the sync maps

    arrays = records.read_tfrecord(record_path(work_dir, 'train', '1_0'), FRAME, 16)
    labels = np.array(label_rows(22, np.random.default_rng(0)), dtype=np.float64)
    mono = samples['1_0'][:, 0]
    assert arrays['id'] == '1_0'
    assert np.array_equal(arrays['timestamps'], labels[:, 0].astype(np.int64))
    assert np.array_equal(arrays['labels'], labels[:, 1:].astype(np.float32))
    # One frame per label row: 20 whole frames, one with 400 samples, one past the end.
    assert np.array_equal(arrays['audio'][:20].ravel(), mono[:20 * FRAME])
    assert np.array_equal(arrays['audio'][20, :400], mono[20 * FRAME:])
    assert not np.any(arrays['audio'][20, 400:]) and not np.any(arrays['audio'][21])
    expected_word = brute_force_best_word(WORDS, 22, STEP)
    for frame, word in enumerate(expected_word):
        expected = embedder.vector(WORDS[word][2]) if word >= 0 else np.zeros(16)
        assert np.array_equal(arrays['embeddings'][frame], expected), frame

    silent = records.read_tfrecord(record_path(work_dir, 'train', '1_1'), FRAME, 16)
    assert silent['audio'].shape == (9, FRAME) and not np.any(silent['embeddings'])
    resampled = records.read_tfrecord(record_path(work_dir, 'devel', '2_0'), FRAME, 16)
    assert resampled['audio'].shape == (13, FRAME)


def test_rerun_skips_finished_records_and_overwrite_rewrites_them(corpus):
    muse_dir, work_dir, _ = corpus
    assert generate(muse_dir, work_dir)[1] == 0
    paths = [record_path(work_dir, 'train', '1_0'), word_embeddings.word2vec_path(work_dir, 16)]
    os.remove(record_path(work_dir, 'test', '3_0'))
    before = [os.stat(p).st_mtime_ns for p in paths]
    run, status = generate(muse_dir, work_dir)
    assert status == 0
    assert {r.name: r.status for r in run.results} == {
        '1_0': 'skipped', '1_1': 'skipped', '2_0': 'skipped', '3_0': 'written'}
    assert [os.stat(p).st_mtime_ns for p in paths] == before
    assert read_info(work_dir).recordings == FRAMES
    assert generate(muse_dir, work_dir, overwrite=True)[1] == 0
    assert all(os.stat(p).st_mtime_ns != t for p, t in zip(paths, before))


def test_changed_settings_need_overwrite(corpus):
    muse_dir, work_dir, _ = corpus
    assert generate(muse_dir, work_dir)[1] == 0
    with pytest.raises(helper.InputError, match='made with sample_rate=4000'):
        generate(muse_dir, work_dir, sample_rate=8000)
    assert generate(muse_dir, work_dir, sample_rate=8000, overwrite=True)[1] == 0
    arrays = records.read_tfrecord(record_path(work_dir, 'train', '1_0'), 2000, 16)
    assert arrays['audio'].shape == (22, 2000)


def test_a_video_moved_to_another_portion_takes_all_its_segments(corpus):
    muse_dir, work_dir, _ = corpus
    assert generate(muse_dir, work_dir)[1] == 0
    write_partition(work_dir, {'1': 'devel', '2': 'devel', '3': 'test'})
    assert generate(muse_dir, work_dir)[1] == 0
    for name in ('1_0', '1_1'):
        assert not os.path.exists(record_path(work_dir, 'train', name))
        assert os.path.isfile(record_path(work_dir, 'devel', name))
    assert read_info(work_dir).partition == {'train': [], 'devel': ['1_0', '1_1', '2_0'],
                                             'test': ['3_0']}


def test_bad_segments_are_reported_and_the_others_written(corpus, caplog):
    muse_dir, work_dir, _ = corpus
    rng = np.random.default_rng(5)
    layout = paths.MuseLayout(muse_dir)
    write_segment(muse_dir, work_dir, '9_0', 2.0, label_rows(3, rng) + [(750, 'nan', 0.5)],
                  WORDS)
    write_segment(muse_dir, work_dir, '9_1', 2.0, label_rows(8, rng), WORDS)
    os.remove(paths.sync_map_path(work_dir, '9_1'))
    write_segment(muse_dir, work_dir, '9_2', 2.0, label_rows(8, rng), WORDS)
    os.remove(layout.audio_path('9_2'))
    write_segment(muse_dir, work_dir, '9_3', 2.0, label_rows(2, rng) + [(600, 0.1, 0.1)], WORDS)
    write_segment(muse_dir, work_dir, '9_4', 2.0, label_rows(8, rng), [])
    with open(paths.sync_map_path(work_dir, '9_4'), 'w') as handle:
        handle.write('id,start,end,word\n9_4_w0,0.1,0.5,the\n\n9_4_w1,0.9,0.6,car\n')
    write_segment(muse_dir, work_dir, '9_5', 2.0, label_rows(8, rng), WORDS)
    with open(layout.audio_path('9_5'), 'r+b') as handle:
        handle.truncate(30)  # cut inside the WAV header
    # Written, with a note: 10 s of audio for 2 s of labels.
    write_segment(muse_dir, work_dir, '9_6', 10.0, label_rows(9, rng), WORDS)
    os.makedirs(os.path.join(paths.labels_dir(work_dir), '8'))  # a video without label files
    write_partition(work_dir, {'1': 'train', '2': 'devel', '3': 'test', '9': 'train',
                               '8': 'train'})

    run, status = generate(muse_dir, work_dir)
    assert status == 1
    errors = '\n'.join(r.error for r in run.results if r.error)
    assert "9_0.csv, row 5: column 'arousal': 'nan' is not a finite number" in errors
    assert ('9_1.csv: sync map not found: run synchronisation_map_generator.py for this segment'
            in errors)
    assert '9_2.csv: labels of segment 9_2, which has no audio' in errors
    assert '9_3.csv, row 4: timestamp 600 ms is not a non-negative multiple of 250' in errors
    assert "9_4.csv, row 4: word 'car' spans 0.9..0.6 s" in errors
    assert '9_5.wav' in errors
    assert '6 segments failed (9_0, 9_1, 9_2, 9_3, 9_4, 9_5); 2 other problems' in caplog.text
    assert "left out of word2vec training: %s, row 4: word 'car'" % paths.sync_map_path(
        work_dir, '9_4') in caplog.text
    assert 'video 8 of the partition has no label files' in caplog.text
    assert '9_6 (audio 10.0 s, labels 2.0 s)' in caplog.text
    assert read_info(work_dir).partition == {'train': ['1_0', '1_1', '9_6'], 'devel': ['2_0'],
                                             'test': ['3_0']}
    train_dir = os.path.join(paths.tfrecords_dir(work_dir), 'train')
    assert sorted(os.listdir(train_dir)) == ['1_0.tfrecords', '1_1.tfrecords', '9_6.tfrecords']


def test_without_sync_maps_word2vec_cannot_be_trained(corpus):
    muse_dir, work_dir, _ = corpus
    shutil.rmtree(paths.sync_maps_dir(work_dir))
    with pytest.raises(helper.InputError, match='sync_maps: no sync maps: run '
                       'synchronisation_map_generator.py first'):
        generate(muse_dir, work_dir)


@pytest.mark.slow
def test_command_line_runs_in_parallel_and_refuses_bad_flags(corpus):
    muse_dir, work_dir, _ = corpus
    command = [sys.executable, 'data_generator.py', '--muse_dir', muse_dir,
               '--work_dir', work_dir, '--embedding_dim', '8']
    bad_rate = subprocess.run(command + ['--sample_rate', '22050'], cwd=REPO,
                              capture_output=True, text=True)
    assert bad_rate.returncode != 0 and 'multiple of 1000 Hz' in bad_rate.stderr
    foreign = subprocess.run(command + ['--hidden_units', '8'], cwd=REPO,
                             capture_output=True, text=True)
    assert foreign.returncode != 0 and 'Unknown command line flag' in foreign.stderr
    run = subprocess.run(command + ['--sample_rate', str(RATE), '--workers', '2'], cwd=REPO,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert 'frames/s' in run.stderr and '0 distinct unknown' in run.stderr
    assert read_info(work_dir).recordings == FRAMES
    os.remove(paths.partition_path(work_dir))
    missing = subprocess.run(command + ['--sample_rate', str(RATE)], cwd=REPO,
                             capture_output=True, text=True)
    assert missing.returncode == 1 and 'partition.csv: file not found' in missing.stderr
