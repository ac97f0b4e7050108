"""data_provider.py: tight and per-segment windows from one segment only, tight
ones in the fewest windows a segment needs, packed windows
whose segments stay apart (one padding frame, a reset on each first frame),
every frame drawn once per pass, exact frames, masks that mark padding,
evaluation windows in segment order, any sequence length from the same TFRecords,
seeded determinism, clear errors on missing records."""

import os
import shutil

import numpy as np
import pytest

import data_provider
import helper
from ser import paths
from ser import defaults
from ser.dataset import DatasetInfo

tf = data_provider.tf


def run_batches(build, max_batches=None):
    """Build the pipeline in a fresh graph and fetch batches as numpy dicts,
    until OutOfRangeError or `max_batches`."""
    batches = []
    with tf.Graph().as_default():
        tensors = build()
        with tf.Session() as session:
            session.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
            coordinator = tf.train.Coordinator()
            threads = tf.train.start_queue_runners(session, coordinator)
            try:
                while max_batches is None or len(batches) < max_batches:
                    batches.append(session.run(tensors))
            except tf.errors.OutOfRangeError:
                pass
            finally:
                coordinator.request_stop()
                coordinator.join(threads)
    return batches


def elements(batches):
    """Every batch element as a dict of numpy arrays, ids decoded."""
    for batch in batches:
        for b in range(len(batch['id'])):
            element = {name: values[b] for name, values in batch.items()}
            element['id'] = (element['id'].decode() if isinstance(element['id'], bytes)
                             else np.array([i.decode() for i in element['id']]))
            yield element


def check_window(window, recordings):
    """The window's real frames are one consecutive run of its own recording,
    equal to the written arrays; everything else is zero with mask 0.
    Returns the recording frame indices it covers."""
    recording = recordings[window['id']]
    real = np.flatnonzero(window['mask'])
    assert real.size > 0
    assert set(np.unique(window['mask'])) <= {0.0, 1.0}
    assert np.array_equal(real, np.arange(real[0], real[-1] + 1)), 'real frames are not one run'
    frames = window['timestamps'][real] // paths.LABEL_STEP_MS
    assert np.array_equal(frames, np.arange(frames[0], frames[0] + real.size))
    for name in ('audio', 'embeddings', 'labels', 'timestamps'):
        assert np.array_equal(window[name][real], recording[name][frames]), name
        padding = np.delete(window[name], real, axis=0)
        assert not np.any(padding), name + ' padding is not zero'
    return frames


def test_per_segment_windows_come_from_one_segment_with_exact_frames(tiny_dataset,
                                                                       tiny_recordings):
    batch_size, length = 4, 16
    batches = run_batches(lambda: data_provider.get_split(
        tiny_dataset, 'train', batch_size, length, is_training=True, seed=3,
        windows='per_segment'), max_batches=30)
    info = DatasetInfo.load(tiny_dataset)
    assert batches[0]['audio'].shape == (batch_size, length, info.frame_samples)
    assert batches[0]['embeddings'].shape == (batch_size, length, info.embedding_dim)
    seen, starts = set(), set()
    for window in elements(batches):
        assert tiny_recordings[window['id']]['portion'] == 'train'
        frames = check_window(window, tiny_recordings)
        seen.add(window['id'])
        if window['mask'][0]:
            starts.add(int(frames[0]) % length)
    assert seen == {i for i, r in tiny_recordings.items() if r['portion'] == 'train'}
    # A random offset per pass moves window boundaries off multiples of T.
    assert len(starts) > 1


TRAIN_FRAMES = {'1_0': 64, '1_1': 48, '2_0': 80}


def test_tight_windows_use_the_fewest_windows_a_segment_needs(tiny_dataset, tiny_recordings):
    assert {i: len(r['timestamps']) for i, r in tiny_recordings.items()
            if r['portion'] == 'train'} == TRAIN_FRAMES
    # T = 20: 1_0 needs 4 windows (16 spare frames), 1_1 3 (12 spare), 2_0 4 (none).
    length = 20
    spare = {name: -n % length for name, n in TRAIN_FRAMES.items()}
    batches = run_batches(lambda: data_provider.get_split(
        tiny_dataset, 'train', 4, length, is_training=True, seed=3, windows='tight'),
        max_batches=60)
    offsets = {name: set() for name in TRAIN_FRAMES}
    for window in elements(batches):
        frames = check_window(window, tiny_recordings)
        first = np.flatnonzero(window['mask'])[0]
        # The segment's leading padding, whichever of its windows this is.
        offsets[window['id']].add(int(first - frames[0]) % length)
    assert all(offsets.values())
    for name, seen in offsets.items():
        assert max(seen) <= spare[name], name
    # The spare frames move from pass to pass where there are any.
    assert len(offsets['1_0']) > 1 and len(offsets['1_1']) > 1 and offsets['2_0'] == {0}
    # Padding is only what the fewest windows leave: 192 real frames in 220.
    real = np.mean([b['mask'].mean() for b in batches])
    assert abs(real - 192 / 220) < 0.03


def packed_stream(dataset, length, n_windows, seed=0):
    """The first n_windows windows of the packed stream, in stream order (before
    the shuffle pool), as numpy dicts."""
    def build():
        info = DatasetInfo.load(dataset)
        queue = tf.train.string_input_producer(info.portion_files('train'), seed=seed)
        segment = data_provider.read_segment(queue, info.frame_samples, info.embedding_dim)
        return data_provider.packed_windows(segment, length)
    return run_batches(build, max_batches=n_windows)


def test_packed_stream_draws_every_frame_once_per_pass_segments_apart(tiny_dataset,
                                                                       tiny_recordings):
    assert {i: len(r['timestamps']) for i, r in tiny_recordings.items()
            if r['portion'] == 'train'} == TRAIN_FRAMES
    # One pass is 192 frames + 3 padding frames = 13 windows of 15: cut two passes.
    windows = packed_stream(tiny_dataset, 15, 26)
    stream = {name: np.concatenate([w[name] for w in windows]) for name in windows[0]}
    ids = np.array([i.decode() for i in stream['id']])
    padding = np.flatnonzero(stream['mask'] == 0)
    # Exactly one padding frame before each segment: zeros, no id, no reset.
    assert len(padding) == 6 and ids[padding].tolist() == [''] * 6
    for name in ('audio', 'embeddings', 'labels', 'timestamps', 'reset'):
        assert not np.any(stream[name][padding]), name
    passes = []
    for start, end in zip(padding, list(padding[1:]) + [len(ids)]):
        name = ids[start + 1]
        piece = slice(start + 1, end)
        assert set(ids[piece]) == {name}
        recording = tiny_recordings[name]
        for key in ('audio', 'embeddings', 'labels', 'timestamps'):
            np.testing.assert_array_equal(stream[key][piece], recording[key], err_msg=key)
        # The LSTM starts afresh on the segment's first frame and nowhere else.
        assert stream['reset'][start + 1] == 1 and stream['reset'][piece].sum() == 1
        passes.append(name)
    # Every train segment once per pass, in a shuffled order.
    assert sorted(passes[:3]) == sorted(passes[3:]) == sorted(TRAIN_FRAMES)


def test_packed_batches_are_mostly_real_frames(tiny_dataset, tiny_recordings):
    batches = run_batches(lambda: data_provider.get_split(
        tiny_dataset, 'train', 4, 16, is_training=True, seed=3, windows='packed'),
        max_batches=20)
    real = np.mean([b['mask'].mean() for b in batches])
    # One padding frame per segment of 48-80 frames.
    assert real > 0.97
    for window in elements(batches):
        for t in np.flatnonzero(window['mask']):
            recording = tiny_recordings[window['id'][t]]
            frame = window['timestamps'][t] // paths.LABEL_STEP_MS
            np.testing.assert_array_equal(window['audio'][t], recording['audio'][frame])
            assert window['reset'][t] == (frame == 0)


@pytest.mark.parametrize('windows, id_shape', [('packed', [5, 100]), ('per_segment', [5]),
                                               ('tight', [5])])
def test_training_shapes_are_static(tiny_dataset, windows, id_shape):
    with tf.Graph().as_default():
        batch = data_provider.get_split(tiny_dataset, 'train', 5, 100, is_training=True,
                                        windows=windows)
        shapes = {name: tensor.shape.as_list() for name, tensor in batch.items()}
    expected = {'audio': [5, 100, 250], 'embeddings': [5, 100, 8], 'labels': [5, 100, 2],
                'mask': [5, 100], 'id': id_shape, 'timestamps': [5, 100]}
    if windows == 'packed':
        expected['reset'] = [5, 100]
    assert shapes == expected
    assert batch['timestamps'].dtype == tf.int64 and batch['mask'].dtype == tf.float32


@pytest.mark.parametrize('length', [7, 30, 100])
def test_any_sequence_length_reassembles_every_segment(tiny_dataset, tiny_recordings, length):
    batches = run_batches(lambda: data_provider.get_split(
        tiny_dataset, 'devel', 3, length, is_training=False, num_epochs=1))
    pieces = {}
    for window in elements(batches):
        check_window(window, tiny_recordings)
        pieces.setdefault(window['id'], []).append(window)
    assert set(pieces) == {i for i, r in tiny_recordings.items() if r['portion'] == 'devel'}
    for recording_id, windows in pieces.items():
        recording = tiny_recordings[recording_id]
        n_frames = len(recording['timestamps'])
        assert len(windows) == -(-n_frames // length)
        mask = np.concatenate([w['mask'] for w in windows])
        assert np.array_equal(mask, np.arange(len(mask)) < n_frames)
        audio = np.concatenate([w['audio'] for w in windows])[:n_frames]
        assert np.array_equal(audio, recording['audio'])


def first_batches(dataset, seed, windows):
    return run_batches(lambda: data_provider.get_split(
        dataset, 'train', 3, 12, is_training=True, seed=seed, windows=windows), max_batches=8)


@pytest.mark.slow
@pytest.mark.parametrize('windows', defaults.WINDOW_SCHEMES)
def test_same_seed_same_batches_other_seed_other_batches(tiny_dataset, windows):
    first, again, other = (first_batches(tiny_dataset, seed, windows) for seed in (5, 5, 6))
    for a, b in zip(first, again):
        for name in a:
            assert np.array_equal(a[name], b[name]), name
    assert any(not np.array_equal(a['timestamps'], c['timestamps']) or
               not np.array_equal(a['id'], c['id']) for a, c in zip(first, other))


@pytest.mark.parametrize('is_training', [True, False])
def test_windows_need_a_length_and_a_known_scheme(tiny_dataset, is_training):
    with tf.Graph().as_default(), pytest.raises(ValueError, match='sequence_length'):
        data_provider.get_split(tiny_dataset, 'train', 2, None, is_training=is_training)
    with tf.Graph().as_default(), pytest.raises(ValueError, match='windows must be one of'):
        data_provider.get_split(tiny_dataset, 'train', 2, 10, is_training=True, windows='x')


@pytest.fixture
def dataset_copy(tiny_dataset, tmp_path):
    copy = str(tmp_path / 'tfrecords')
    shutil.copytree(tiny_dataset, copy)
    return copy


def test_a_missing_record_is_named(dataset_copy):
    os.remove(os.path.join(dataset_copy, 'devel', '3_1.tfrecords'))
    with tf.Graph().as_default(), pytest.raises(
            helper.InputError, match='3_1.tfrecords: listed in .*dataset.json but missing'):
        data_provider.get_split(dataset_copy, 'devel', 1, 10, is_training=False)
    shutil.rmtree(os.path.join(dataset_copy, 'test'))
    with tf.Graph().as_default(), pytest.raises(
            helper.InputError, match='4_0.tfrecords: listed in .*dataset.json but missing'):
        data_provider.get_split(dataset_copy, 'test', 1, 10, is_training=False)


def test_empty_portion_is_an_input_error(dataset_copy):
    path = os.path.join(dataset_copy, 'dataset.json')
    info = helper.read_json(path)
    info['partition']['test'] = []
    helper.write_json(path, info)
    with tf.Graph().as_default(), pytest.raises(helper.InputError, match='no test segments'):
        data_provider.get_split(dataset_copy, 'test', 1, 10, is_training=False)
