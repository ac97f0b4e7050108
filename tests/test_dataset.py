"""ser.dataset.DatasetInfo: dataset.json written with paths relative to
itself, read back resolved, validated with errors naming the file, compared
on the input shapes; a work directory moved elsewhere still loads and
trains/evaluates."""

import dataclasses
import json
import os
import shutil

import pytest

import helper
from ser import training
from ser.dataset import DatasetInfo


def make_info(work_dir):
    return DatasetInfo.create(16000, 100, os.path.join(work_dir, 'embeddings', 'w.kv'),
                              {'train': ['1_10', '1_2'], 'devel': ['2_0']},
                              {'1_2': 4, '1_10': 3, '2_0': 5},
                              os.path.join(work_dir, 'partition.csv'))


def test_save_stores_relative_paths_and_load_resolves_them(tmp_path):
    work_dir = str(tmp_path / 'work')
    path = make_info(work_dir).save(os.path.join(work_dir, 'tfrecords'))
    assert path == os.path.join(work_dir, 'tfrecords', 'dataset.json')
    stored = helper.read_json(path)
    assert stored['embeddings'] == os.path.join('..', 'embeddings', 'w.kv')
    assert stored['partition_file'] == os.path.join('..', 'partition.csv')
    assert stored['frame_samples'] == 4000 and stored['label_step_ms'] == 250
    # Segments in segment order (2 before 10), frames per portion.
    assert stored['partition'] == {'train': ['1_2', '1_10'], 'devel': ['2_0'], 'test': []}
    assert stored['frames'] == {'train': 7, 'devel': 5, 'test': 0}

    moved = str(tmp_path / 'elsewhere' / 'work')
    shutil.move(work_dir, moved)
    info = DatasetInfo.load(os.path.join(moved, 'tfrecords'))
    assert info.path == os.path.join(moved, 'tfrecords', 'dataset.json')
    assert info.embeddings_path == os.path.join(moved, 'embeddings', 'w.kv')
    assert info.partition_file == os.path.join(moved, 'partition.csv')
    assert info.recordings == {'1_2': 4, '1_10': 3, '2_0': 5}
    # Saved into another directory, the paths are made relative to it.
    info.save(os.path.join(moved, 'checkpoints', 'run1'))
    assert helper.read_json(os.path.join(moved, 'checkpoints', 'run1', 'dataset.json'))[
        'embeddings'] == os.path.join('..', '..', 'embeddings', 'w.kv')
    again = DatasetInfo.load(os.path.join(moved, 'checkpoints', 'run1', 'dataset.json'))
    assert again.embeddings_path == info.embeddings_path


def test_compatibility_names_both_files_and_the_difference(tmp_path):
    first = make_info(str(tmp_path))
    first.save(str(tmp_path / 'a'))
    other = DatasetInfo.create(16000, 50, first.embeddings_path, first.partition,
                               first.recordings)
    other.save(str(tmp_path / 'b'))
    with pytest.raises(helper.InputError, match=r'b/dataset.json: does not match .*a/dataset.json '
                       r'\(embedding_dim: 100 vs 50\)'):
        DatasetInfo.load(str(tmp_path / 'a')).check_compatible(DatasetInfo.load(
            str(tmp_path / 'b')))
    # Other segments are compatible shapes, but not the same data.
    fewer = DatasetInfo.create(16000, 100, first.embeddings_path, {'train': ['1_2']}, {'1_2': 4})
    assert first.check_compatible(fewer) is fewer
    with pytest.raises(helper.InputError, match='partition: '):
        first.check_compatible(fewer, same_data=True)


@pytest.mark.parametrize('change, problem', [
    (lambda d: d.pop('frame_samples'), 'missing keys: frame_samples'),
    (lambda d: d.update(sample_rate='16000'), 'sample_rate must be a positive integer'),
    (lambda d: d.update(frame_samples=3000), 'frame_samples 3000 is not 250 ms at 16000 Hz'),
    (lambda d: d.update(partition={'train': 'abc'}), 'partition must map'),
    (lambda d: d.update(partition={'train': ['1_2', '9_9']}),
     'partition lists segments without a frame count: 9_9'),
    (lambda d: d.update(recordings={'1_2': -1}), 'recordings must map'),
])
def test_a_malformed_file_is_named_with_its_problem(tmp_path, change, problem):
    make_info(str(tmp_path)).save(str(tmp_path))
    path = str(tmp_path / 'dataset.json')
    content = helper.read_json(path)
    change(content)
    with open(path, 'w') as handle:
        json.dump(content, handle)
    with pytest.raises(helper.InputError, match='dataset.json: ' + problem):
        DatasetInfo.load(str(tmp_path))


def test_a_missing_or_broken_file_says_what_to_do(tmp_path):
    with pytest.raises(helper.InputError, match='nowhere/dataset.json: not found: run '
                       'data_generator.py first'):
        DatasetInfo.load(str(tmp_path / 'nowhere'))
    (tmp_path / 'dataset.json').write_text('{"sample_rate": ')
    with pytest.raises(helper.InputError, match='not valid JSON'):
        DatasetInfo.load(str(tmp_path))


@pytest.mark.slow
def test_a_moved_work_directory_trains_and_its_checkpoint_loads(tiny_dataset, tmp_path):
    """tfrecords/, embeddings/ and a training directory copied to another
    place (another machine) work there: the paths resolve to the copy."""
    original = os.path.dirname(tiny_dataset)
    work_dir = str(tmp_path / 'copied')
    shutil.copytree(original, work_dir, ignore=shutil.ignore_patterns('checkpoints*'))
    dataset_dir = os.path.join(work_dir, 'tfrecords')
    train_dir = os.path.join(work_dir, 'checkpoints')
    settings = training.Settings(batch_size=2, sequence_length=8, hidden_units=8, max_steps=1,
                                 device=-1, save_summaries_secs=600)
    training.train(dataset_dir, train_dir, settings)
    with open(os.path.join(train_dir, 'checkpoint')) as handle:
        assert work_dir not in handle.read()  # the state file names checkpoints relatively

    moved = str(tmp_path / 'moved')
    shutil.move(work_dir, moved)
    info = DatasetInfo.load(os.path.join(moved, 'checkpoints'))
    assert info.embeddings_path == os.path.join(moved, 'embeddings', 'tiny_8.kv')
    assert os.path.isfile(info.embeddings_path)
    DatasetInfo.load(os.path.join(moved, 'tfrecords')).check_compatible(info, same_data=True)
    # Training resumes in the moved directory, on the moved data.
    settings = dataclasses.replace(settings, max_steps=2)
    assert training.train(os.path.join(moved, 'tfrecords'), os.path.join(moved, 'checkpoints'),
                          settings) == 2
