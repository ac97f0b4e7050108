"""A labelled test set carved out of MuSe-CaR's devel set, by video.

MuSe-CaR withholds the labels of its test set. The new partition keeps train,
shuffles the labelled devel videos with a seed and splits them into devel and
test; all segments of a video stay in one set. A video counts as labelled when
label_generator.py wrote labels/<Id>/<Id>_<seg>.csv files for it.

Among several seeded splits the one whose devel and test labels are
distributed most alike can be kept: the balance statistic is the sum over
arousal and valence of the two-sample Kolmogorov-Smirnov statistic between the
devel and the test frame values (0 when the empirical distributions are
identical, at most 2).
"""
import logging
import math

import numpy as np
import scipy.stats
from tqdm import tqdm

from ser import muse
from ser import defaults
from ser import paths


def format_partition(partition):
    """Counts per set, then the ids of each set in order."""
    sets = {portion: sorted((i for i, p in partition.items() if p == portion),
                            key=paths.natural_key)
            for portion in defaults.PORTIONS}
    lines = ['%-5s %4d video%s' % (portion, len(ids), '' if len(ids) == 1 else 's')
             for portion, ids in sets.items()]
    lines += [' '.join([portion + ':'] + ids) for portion, ids in sets.items()]
    return '\n'.join(lines)


def labelled_ids(work_dir, video_ids):
    """The ids among `video_ids` with segment label files (labels/<Id>/*.csv)."""
    return {i for i in video_ids if paths.work_segments(paths.labels_dir(work_dir), i)}


def held_out_count(count, test_fraction):
    """Videos moved to test: the rounded fraction, leaving both sets non-empty."""
    return min(max(math.floor(test_fraction * count + 0.5), 1), count - 1)


def candidate_splits(devel_ids, test_fraction, seed, trials):
    """`trials` (devel, test) splits of the labelled devel ids, drawn in turn
    from one generator seeded with `seed`: trial k is the same whatever the
    number of trials."""
    ids = sorted(devel_ids, key=paths.natural_key)  # the order of the input files must not matter
    n_devel = len(ids) - held_out_count(len(ids), test_fraction)
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        shuffled = [ids[i] for i in rng.permutation(len(ids))]
        yield (sorted(shuffled[:n_devel], key=paths.natural_key),
               sorted(shuffled[n_devel:], key=paths.natural_key))


def video_label_values(work_dir, video_id):
    """Float array [frames, dimensions] of all of a video's segment labels."""
    segments = paths.work_segments(paths.labels_dir(work_dir), video_id)
    return np.concatenate([muse.read_labels(paths.label_path(work_dir, name))[1]
                           for name in segments])


def read_label_values(work_dir, video_ids):
    """{video id: float array [frames, dimensions]} of the videos' segment labels."""
    return {video_id: video_label_values(work_dir, video_id) for video_id in video_ids}


def balance_statistic(label_values, devel, test):
    """Sum over dimensions of the two-sample KS statistic between the frame
    values of the devel and the test videos."""
    devel_values = np.concatenate([label_values[i] for i in devel])
    test_values = np.concatenate([label_values[i] for i in test])
    return float(sum(scipy.stats.ks_2samp(devel_values[:, d], test_values[:, d],
                                          method='asymp').statistic
                     for d in range(len(paths.DIMENSIONS))))


def choose_split(label_values, splits):
    """(trial, statistics of every trial): the first trial with the smallest statistic."""
    statistics = [balance_statistic(label_values, devel, test)
                  for devel, test in tqdm(splits, desc='balance trials', unit='trial',
                                          disable=len(splits) < 2)]
    return int(np.argmin(statistics)), statistics


def new_partition(train, devel, test):
    """{Id: Proposal} in file order: train, devel, test, each by id."""
    partition = {}
    for portion, ids in zip(defaults.PORTIONS, (train, devel, test)):
        partition.update((i, portion) for i in sorted(ids, key=paths.natural_key))
    return partition


def report_left_out(partition, labelled, work_dir):
    """Say which videos the new partition leaves out, and why."""
    official_test = [i for i, p in partition.items() if p == 'test']
    if official_test:
        logging.info('left out: %d video(s) of the official test set (the new test set '
                     'replaces it), %d of them without labels', len(official_test),
                     sum(i not in labelled for i in official_test))
    unlabelled = sorted((i for i, p in partition.items() if p != 'test' and i not in labelled),
                        key=paths.natural_key)
    if unlabelled:
        logging.warning('left out: %d train/devel video(s) without label files in %s '
                        '(run label_generator.py): %s', len(unlabelled),
                        paths.labels_dir(work_dir), ' '.join(unlabelled))
