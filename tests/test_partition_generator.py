"""partition_generator.py and ser.partition: a seeded devel/test split of the
labelled devel videos; the partition is by video, every segment of a video in
one set."""
import os
import shutil

import numpy as np
import pytest

from ser import partition as partition_generator
from ser import paths
from label_fixtures import run_script, video_labels, write, write_labels, write_partition

TRAIN = ['1', '2', '3']
DEVEL = [str(i) for i in range(10, 30)]
OFFICIAL_TEST = ['40', '41']
UNLABELLED_DEVEL = '29'
LABELLED_DEVEL = [i for i in DEVEL if i != UNLABELLED_DEVEL]


@pytest.fixture
def corpus(tmp_path):
    """(muse_dir, work_dir): 3 train, 20 devel (one without labels) and 2
    official test videos without labels; each labelled video has 1 to 3
    segments. Each video's labels sit around its own level, so that splits
    differ in balance."""
    muse_dir, work_dir = str(tmp_path / 'MuSe-CaR'), str(tmp_path / 'work')
    write_partition(paths.MuseLayout(muse_dir).partition_path,
                    {**{i: 'train' for i in TRAIN}, **{i: 'devel' for i in DEVEL},
                     **{i: 'test' for i in OFFICIAL_TEST}})
    rng = np.random.default_rng(7)
    for number, recording_id in enumerate(TRAIN + LABELLED_DEVEL):
        frames = 8 + number % 5
        centre = np.array([np.sin(number), np.cos(2 * number)]) * 0.6
        write_labels(work_dir, recording_id,
                     np.clip(centre + rng.normal(0, 0.2, (frames, 2)), -1, 1),
                     segments=1 + number % 3)
    # Hidden files in labels/ must not count as labels.
    write(os.path.join(paths.labels_dir(work_dir), '.DS_Store'), b'\x00\x05\x16\x07Bud1')
    write(os.path.join(paths.labels_dir(work_dir), UNLABELLED_DEVEL,
                       '._%s_1.csv' % UNLABELLED_DEVEL), b'\x00\xff')
    return muse_dir, work_dir


def ids_of(partition, portion):
    return [i for i, p in partition.items() if p == portion]


def ks_statistic(a, b):
    """Two-sample Kolmogorov-Smirnov statistic from the empirical CDFs,
    written independently of the script's scipy call."""
    points = np.concatenate([a, b])
    cdf_a = np.searchsorted(np.sort(a), points, side='right') / len(a)
    cdf_b = np.searchsorted(np.sort(b), points, side='right') / len(b)
    return np.max(np.abs(cdf_a - cdf_b))


def expected_statistic(work_dir, devel, test):
    values = {}
    for portion, ids in (('devel', devel), ('test', test)):
        values[portion] = np.concatenate([
            video_labels(work_dir, i) for i in ids])
    return sum(ks_statistic(values['devel'][:, d], values['test'][:, d]) for d in range(2))


def test_format_partition_gives_counts_then_ids_in_numeric_order():
    text = partition_generator.format_partition(
        {'10': 'devel', '2': 'train', '1': 'train', 'b7': 'devel', '9': 'devel'})
    assert text.splitlines() == ['train    2 videos', 'devel    3 videos',
                                 'test     0 videos', 'train: 1 2', 'devel: 9 10 b7',
                                 'test:']


def test_same_seed_same_split_and_different_seeds_differ():
    def split(seed, trials=1, ids=LABELLED_DEVEL):
        return list(partition_generator.candidate_splits(ids, 0.5, seed, trials))

    assert split(0) == split(0)
    assert split(0, ids=list(reversed(LABELLED_DEVEL))) == split(0)
    assert len({tuple(split(seed)[0][1]) for seed in range(5)}) == 5
    # A trial does not depend on how many trials are drawn after it.
    assert split(3, trials=6)[:2] == split(3, trials=2)


@pytest.mark.parametrize('fraction, test_count', [
    (0.01, 1), (0.1, 2), (0.25, 5), (0.5, 10), (0.75, 14), (0.9, 17), (0.99, 18)])
def test_test_fraction_moves_the_rounded_share_of_devel_to_test(fraction, test_count):
    # 19 labelled devel videos: 19 * fraction rounded, at least 1, at most 18.
    (devel, test), = partition_generator.candidate_splits(LABELLED_DEVEL, fraction, 0, 1)
    assert len(test) == test_count
    assert sorted(devel + test) == sorted(LABELLED_DEVEL)


def test_balance_trials_keeps_the_split_with_the_smallest_statistic(corpus):
    _, work_dir = corpus
    splits = list(partition_generator.candidate_splits(LABELLED_DEVEL, 0.5, 0, 30))
    values = partition_generator.read_label_values(work_dir, LABELLED_DEVEL)
    trial, statistics = partition_generator.choose_split(values, splits)
    expected = [expected_statistic(work_dir, devel, test) for devel, test in splits]
    np.testing.assert_allclose(statistics, expected, rtol=0, atol=1e-12)
    assert trial == int(np.argmin(expected))
    assert expected[trial] < expected[0]  # the data make trial 0 beatable


def test_command_line_keeps_train_splits_labelled_devel_and_leaves_out_the_rest(corpus):
    muse_dir, work_dir = corpus
    result = run_script('partition_generator.py', '--muse_dir', muse_dir,
                        '--work_dir', work_dir, '--seed', '5')
    assert result.returncode == 0, result.stderr
    partition = paths.read_partition(paths.partition_path(work_dir))
    (devel, test), = partition_generator.candidate_splits(LABELLED_DEVEL, 0.5, 5, 1)
    assert list(partition) == TRAIN + devel + test
    assert (ids_of(partition, 'train'), ids_of(partition, 'devel'),
            ids_of(partition, 'test')) == (TRAIN, devel, test)
    # Current partition, then the new one, are printed.
    assert 'devel   20 videos' in result.stdout
    assert 'devel: %s' % ' '.join(DEVEL) in result.stdout
    assert 'test: %s' % ' '.join(test) in result.stdout
    assert '%.4f' % expected_statistic(work_dir, devel, test) in result.stdout
    assert UNLABELLED_DEVEL in result.stderr and 'official test' in result.stderr


@pytest.mark.slow
def test_command_line_balance_trials_writes_the_chosen_split(corpus, tmp_path):
    muse_dir, work_dir = corpus
    output = str(tmp_path / 'balanced.csv')
    arguments = ['--muse_dir', muse_dir, '--work_dir', work_dir, '--output', output,
                 '--balance_trials', '30']
    result = run_script('partition_generator.py', *arguments)
    assert result.returncode == 0, result.stderr
    splits = list(partition_generator.candidate_splits(LABELLED_DEVEL, 0.5, 0, 30))
    statistics = [expected_statistic(work_dir, devel, test) for devel, test in splits]
    best = int(np.argmin(statistics))
    partition = paths.read_partition(output)
    assert (ids_of(partition, 'devel'), ids_of(partition, 'test')) == splits[best]
    assert 'trial 0: %.4f; chosen: trial %d of 30: %.4f' % (
        statistics[0], best, statistics[best]) in result.stdout
    with open(output, 'rb') as handle:
        first_run = handle.read()
    assert run_script('partition_generator.py', *arguments).returncode == 0
    with open(output, 'rb') as handle:
        assert handle.read() == first_run
    assert not os.path.exists(paths.partition_path(work_dir))


@pytest.mark.parametrize('arguments, message', [
    (['--test_fraction', '1'], '--test_fraction must be strictly between 0 and 1'),
    (['--test_fraction', '0'], '--test_fraction must be strictly between 0 and 1'),
    (['--balance_trials', '0'], 'balance_trials'),
])
def test_command_line_refuses_bad_flags(corpus, arguments, message):
    muse_dir, work_dir = corpus
    result = run_script('partition_generator.py', '--muse_dir', muse_dir,
                        '--work_dir', work_dir, *arguments)
    assert result.returncode != 0
    assert message in result.stderr
    assert not os.path.exists(paths.partition_path(work_dir))


def test_command_line_refuses_to_overwrite_the_muse_partition(corpus):
    muse_dir, work_dir = corpus
    muse_partition = paths.MuseLayout(muse_dir).partition_path
    with open(muse_partition, 'rb') as handle:
        original = handle.read()
    result = run_script('partition_generator.py', '--muse_dir', muse_dir,
                        '--work_dir', work_dir, '--output', muse_partition)
    assert result.returncode != 0
    assert 'must not overwrite' in result.stderr
    with open(muse_partition, 'rb') as handle:
        assert handle.read() == original


def test_command_line_needs_two_labelled_devel_videos(corpus):
    muse_dir, work_dir = corpus
    for video_id in LABELLED_DEVEL[1:]:
        shutil.rmtree(os.path.join(paths.labels_dir(work_dir), video_id))
    result = run_script('partition_generator.py', '--muse_dir', muse_dir,
                        '--work_dir', work_dir)
    assert result.returncode == 1
    assert 'devel has 1 labelled video(s); at least 2 are needed' in result.stderr
    assert not os.path.exists(paths.partition_path(work_dir))
