"""Step 3 (optional): a labelled test set carved out of MuSe-CaR's devel set.

MuSe-CaR withholds the labels of its test set. This prints the current
partition (MuSe-CaR/metadata/partition.csv: counts per set, then the ids of
each set), keeps train, shuffles the labelled devel recordings with --seed and
splits them into devel and test (--test_fraction of them go to test). A
recording counts as labelled when label_generator.py wrote
<work_dir>/labels/<Id>.csv for it; the others, and the official test set
(whose place the new test set takes), are left out and listed. The new
partition is written to --output (header Id,Proposal; train, devel, test) and
printed. The same seed gives the same split, always.

--balance_trials N draws N splits from the seed and keeps the one whose devel
and test labels are distributed most alike: the smallest balance statistic,
the sum over arousal and valence of the two-sample Kolmogorov-Smirnov
statistic between the devel and the test frame values (0 when the empirical
distributions are identical, at most 2). Trial 0 is the split --balance_trials 1
gives; the statistic is printed for it and for the chosen trial.

    python partition_generator.py --muse_dir ./MuSe-CaR --work_dir . --seed 0
"""
import logging
import math
import os

from absl import app, flags
import numpy as np
import scipy.stats
from tqdm import tqdm

import helper

# Every flag allows override: the pipeline's scripts share flag names
# (--work_dir, --verbose, ...) and tests import several of them into one
# process, which absl otherwise refuses.
FLAGS = flags.FLAGS
flags.DEFINE_string('muse_dir', helper.DEFAULT_MUSE_DIR,
                    'MuSe-CaR directory: the current partition is metadata/partition.csv.',
                    allow_override=True)
flags.DEFINE_string('work_dir', helper.DEFAULT_WORK_DIR,
                    'Work directory holding labels/ (from label_generator.py).',
                    allow_override=True)
flags.DEFINE_string('output', None,
                    'Where the new partition is written (default <work_dir>/partition.csv).',
                    allow_override=True)
flags.DEFINE_integer('seed', 0, 'Seed of the devel shuffle: same seed, same split.',
                     lower_bound=0, allow_override=True)
flags.DEFINE_float('test_fraction', 0.5,
                   'Fraction of the labelled devel recordings moved to test, in (0, 1); '
                   'rounded, keeping at least one recording in each set.', allow_override=True)
flags.DEFINE_integer('balance_trials', 1,
                     'Number of seeded splits tried; the one whose devel and test label '
                     'distributions are closest (smallest sum of KS statistics) is kept.',
                     lower_bound=1, allow_override=True)
flags.DEFINE_boolean('verbose', False, 'Show development messages.', allow_override=True)
flags.register_validator('test_fraction', lambda value: 0 < value < 1,
                         message='--test_fraction must be strictly between 0 and 1')

def natural_key(recording_id):
    """Sort numeric ids by value (2 before 10), other ids after them by name."""
    return (0, int(recording_id), '') if recording_id.isdecimal() else (1, 0, recording_id)


def format_partition(partition):
    """Counts per set, then the ids of each set in order."""
    sets = {portion: sorted((i for i, p in partition.items() if p == portion), key=natural_key)
            for portion in helper.PORTIONS}
    lines = ['%-5s %4d recording%s' % (portion, len(ids), '' if len(ids) == 1 else 's')
             for portion, ids in sets.items()]
    lines += [' '.join([portion + ':'] + ids) for portion, ids in sets.items()]
    return '\n'.join(lines)


def labelled_ids(work_dir, recording_ids):
    """The ids among `recording_ids` with a labels file."""
    return {i for i in recording_ids if os.path.isfile(helper.label_path(work_dir, i))}


def held_out_count(count, test_fraction):
    """Recordings moved to test: the rounded fraction, leaving both sets non-empty."""
    return min(max(math.floor(test_fraction * count + 0.5), 1), count - 1)


def candidate_splits(devel_ids, test_fraction, seed, trials):
    """`trials` (devel, test) splits of the labelled devel ids, drawn in turn
    from one generator seeded with `seed`: trial k is the same whatever the
    number of trials."""
    ids = sorted(devel_ids, key=natural_key)  # the order of the input files must not matter
    n_devel = len(ids) - held_out_count(len(ids), test_fraction)
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        shuffled = [ids[i] for i in rng.permutation(len(ids))]
        yield (sorted(shuffled[:n_devel], key=natural_key),
               sorted(shuffled[n_devel:], key=natural_key))


def read_label_values(work_dir, recording_ids):
    """{id: float array [frames, dimensions]} of the labels files."""
    return {recording_id: helper.read_labels(helper.label_path(work_dir, recording_id))[1]
            for recording_id in recording_ids}


def balance_statistic(label_values, devel, test):
    """Sum over dimensions of the two-sample KS statistic between the frame
    values of the devel and the test recordings."""
    devel_values = np.concatenate([label_values[i] for i in devel])
    test_values = np.concatenate([label_values[i] for i in test])
    return float(sum(scipy.stats.ks_2samp(devel_values[:, d], test_values[:, d],
                                          method='asymp').statistic
                     for d in range(len(helper.DIMENSIONS))))


def choose_split(label_values, splits):
    """(trial, statistics of every trial): the first trial with the smallest statistic."""
    statistics = [balance_statistic(label_values, devel, test)
                  for devel, test in tqdm(splits, desc='balance trials', unit='trial',
                                          disable=len(splits) < 2)]
    return int(np.argmin(statistics)), statistics


def new_partition(train, devel, test):
    """{Id: Proposal} in file order: train, devel, test, each by id."""
    partition = {}
    for portion, ids in zip(helper.PORTIONS, (train, devel, test)):
        partition.update((i, portion) for i in sorted(ids, key=natural_key))
    return partition


def report_left_out(partition, labelled, work_dir):
    """Say which recordings the new partition leaves out, and why."""
    official_test = [i for i, p in partition.items() if p == 'test']
    if official_test:
        logging.info('left out: %d recording(s) of the official test set (the new test set '
                     'replaces it), %d of them without labels', len(official_test),
                     sum(i not in labelled for i in official_test))
    unlabelled = sorted((i for i, p in partition.items() if p != 'test' and i not in labelled),
                        key=natural_key)
    if unlabelled:
        logging.warning('left out: %d train/devel recording(s) without a labels file in %s '
                        '(run label_generator.py): %s', len(unlabelled),
                        helper.labels_dir(work_dir), ' '.join(unlabelled))


def main(argv):
    del argv  # unused
    helper.setup_logging(FLAGS.verbose)
    muse_partition = helper.muse_partition_path(FLAGS.muse_dir)
    output = FLAGS.output or helper.partition_path(FLAGS.work_dir)
    if os.path.realpath(output) == os.path.realpath(muse_partition):
        raise app.UsageError('--output must not overwrite MuSe-CaR\'s own partition %s'
                             % muse_partition)
    try:
        partition = helper.read_partition(muse_partition)
        print('Current partition (%s):\n%s\n' % (muse_partition, format_partition(partition)))

        labelled = labelled_ids(FLAGS.work_dir, partition)
        report_left_out(partition, labelled, FLAGS.work_dir)
        train = [i for i, p in partition.items() if p == 'train' and i in labelled]
        devel = [i for i, p in partition.items() if p == 'devel' and i in labelled]
        if len(devel) < 2:
            raise helper.InputError(muse_partition, None, 'devel has %d labelled recording(s); '
                                    'at least 2 are needed to split it' % len(devel))

        splits = list(candidate_splits(devel, FLAGS.test_fraction, FLAGS.seed,
                                       FLAGS.balance_trials))
        trial, statistics = choose_split(read_label_values(FLAGS.work_dir, devel), splits)
    except helper.InputError as error:
        logging.error('%s', error)
        return 1
    print('Balance statistic (sum over %s of the KS statistic between devel and test frame '
          'values; lower is closer): trial 0: %.4f; chosen: trial %d of %d: %.4f\n'
          % (' and '.join(helper.DIMENSIONS), statistics[0], trial, len(splits),
             statistics[trial]))

    partition = new_partition(train, *splits[trial])
    helper.write_csv(output, ('Id', 'Proposal'), partition.items())
    print('New partition (%s):\n%s' % (output, format_partition(partition)))
    logging.info('partition written to %s: %d train, %d devel, %d test (seed %d)', output,
                 len(train), len(splits[trial][0]), len(splits[trial][1]), FLAGS.seed)
    return 0


if __name__ == '__main__':
    app.run(main)
