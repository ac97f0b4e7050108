"""data_provider.py: windows from one recording only, exact frames, masks that
mark padding, whole-recording evaluation order, any sequence length from the
same TFRecords, seeded determinism, clear errors on a missing dataset."""

import json
import os
import shutil

import numpy as np
import pytest

import data_provider
import helper

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
    """Every batch element as a dict of numpy arrays, id decoded."""
    for batch in batches:
        for b in range(len(batch['id'])):
            element = {name: values[b] for name, values in batch.items()}
            element['id'] = element['id'].decode()
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
    frames = window['timestamps'][real] // helper.LABEL_STEP_MS
    assert np.array_equal(frames, np.arange(frames[0], frames[0] + real.size))
    for name in ('audio', 'embeddings', 'labels', 'timestamps'):
        assert np.array_equal(window[name][real], recording[name][frames]), name
        padding = np.delete(window[name], real, axis=0)
        assert not np.any(padding), name + ' padding is not zero'
    return frames


def test_training_windows_come_from_one_recording_with_exact_frames(tiny_dataset,
                                                                    tiny_recordings):
    batch_size, length = 4, 16
    batches = run_batches(lambda: data_provider.get_split(
        tiny_dataset, 'train', batch_size, length, is_training=True, seed=3), max_batches=30)
    info = data_provider.load_dataset_info(tiny_dataset)
    assert batches[0]['audio'].shape == (batch_size, length, info['frame_samples'])
    assert batches[0]['embeddings'].shape == (batch_size, length, info['embedding_dim'])
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


def test_training_shapes_are_static(tiny_dataset):
    with tf.Graph().as_default():
        batch = data_provider.get_split(tiny_dataset, 'train', 5, 100, is_training=True)
        shapes = {name: tensor.shape.as_list() for name, tensor in batch.items()}
    assert shapes == {'audio': [5, 100, 250], 'embeddings': [5, 100, 8], 'labels': [5, 100, 2],
                      'mask': [5, 100], 'id': [5], 'timestamps': [5, 100]}
    assert batch['timestamps'].dtype == tf.int64 and batch['mask'].dtype == tf.float32


def test_whole_recordings_come_once_in_sorted_order_then_end(tiny_dataset, tiny_recordings):
    batches = run_batches(lambda: data_provider.get_split(
        tiny_dataset, 'train', 2, None, is_training=False))
    train_ids = sorted(i for i, r in tiny_recordings.items() if r['portion'] == 'train')
    assert len(batches) == 2  # 3 recordings, batches of 2: the last holds one
    whole = list(elements(batches))
    assert [w['id'] for w in whole] == train_ids
    for window in whole:
        recording = tiny_recordings[window['id']]
        n_frames = len(recording['timestamps'])
        assert window['mask'].sum() == n_frames and np.all(window['mask'][:n_frames] == 1)
        for name in ('audio', 'embeddings', 'labels', 'timestamps'):
            assert np.array_equal(window[name][:n_frames], recording[name]), name
            assert not np.any(window[name][n_frames:]), name


@pytest.mark.parametrize('length', [7, 30, 100])
def test_any_sequence_length_reassembles_every_recording(tiny_dataset, tiny_recordings, length):
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


def first_batches(dataset, seed):
    return run_batches(lambda: data_provider.get_split(
        dataset, 'train', 3, 12, is_training=True, seed=seed), max_batches=8)


def test_same_seed_same_batches_other_seed_other_batches(tiny_dataset):
    first, again, other = (first_batches(tiny_dataset, seed) for seed in (5, 5, 6))
    for a, b in zip(first, again):
        for name in a:
            assert np.array_equal(a[name], b[name]), name
    assert any(not np.array_equal(a['timestamps'], c['timestamps']) or
               not np.array_equal(a['id'], c['id']) for a, c in zip(first, other))


def test_training_refuses_whole_recordings(tiny_dataset):
    with tf.Graph().as_default(), pytest.raises(ValueError, match='sequence_length'):
        data_provider.get_split(tiny_dataset, 'train', 2, None, is_training=True)


@pytest.fixture
def dataset_copy(tiny_dataset, tmp_path):
    copy = str(tmp_path / 'tfrecords')
    shutil.copytree(tiny_dataset, copy)
    return copy


def test_missing_dataset_says_to_run_the_generator(tmp_path):
    with pytest.raises(helper.InputError, match='dataset.json: not found: run data_generator'):
        data_provider.load_dataset_info(str(tmp_path / 'nowhere'))


def test_malformed_dataset_json_names_the_problem(dataset_copy):
    path = os.path.join(dataset_copy, 'dataset.json')
    info = helper.read_json(path)
    del info['frame_samples']
    with open(path, 'w') as handle:
        json.dump(info, handle)
    with pytest.raises(helper.InputError, match='missing keys: frame_samples'):
        data_provider.load_dataset_info(dataset_copy)
    with open(path, 'w') as handle:
        handle.write('{"sample_rate": ')
    with pytest.raises(helper.InputError, match='not valid JSON'):
        data_provider.load_dataset_info(dataset_copy)


def test_missing_portion_directory_or_record_is_named(dataset_copy):
    os.remove(os.path.join(dataset_copy, 'devel', 'tiny_devel_a.tfrecords'))
    with tf.Graph().as_default(), pytest.raises(
            helper.InputError, match='tiny_devel_a.tfrecords: listed in dataset.json but missing'):
        data_provider.get_split(dataset_copy, 'devel', 1, None, is_training=False)
    shutil.rmtree(os.path.join(dataset_copy, 'test'))
    with pytest.raises(helper.InputError, match='directory of portion test not found'):
        data_provider.load_dataset_info(dataset_copy)


def test_empty_portion_is_an_input_error(dataset_copy):
    path = os.path.join(dataset_copy, 'dataset.json')
    info = helper.read_json(path)
    info['partition']['test'] = []
    helper.write_json(path, info)
    with tf.Graph().as_default(), pytest.raises(helper.InputError, match='no test recordings'):
        data_provider.get_split(dataset_copy, 'test', 1, 10, is_training=False)
