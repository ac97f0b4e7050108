"""Step 3 (optional): a labelled test set carved out of MuSe-CaR's devel set.

MuSe-CaR withholds the labels of its test set. This prints the current
partition (MuSe-CaR/metadata/partition.csv: counts per set, then the video ids
of each set), keeps train, shuffles the labelled devel videos with --seed and
splits them into devel and test (--test_fraction of them go to test). The
partition is by video: all segments of a video stay in one set. A video counts
as labelled when label_generator.py wrote <work_dir>/labels/<Id>/<Id>_<seg>.csv
for it; the others, and the official test set (whose place the new test set
takes), are left out and listed. The new partition is written to --output
(header Id,Proposal; video ids; train, devel, test) and printed. The same seed
gives the same split, always.

--balance_trials N draws N splits from the seed and keeps the one whose devel
and test labels are distributed most alike (the smallest sum over arousal and
valence of the two-sample KS statistic between their frame values). Trial 0 is
the split --balance_trials 1 gives; the statistic is printed for it and for
the chosen trial.

    python partition_generator.py --muse_dir ./MuSe-CaR --work_dir . --seed 0
"""
import logging
import os

from absl import app, flags

import helper
from ser import partition as splitting
from ser import paths

FLAGS = flags.FLAGS

# ---- Input flags ----
helper.define_flags('muse_dir', 'work_dir')

# ---- Output flags ----
helper.define_flags('output')

# ---- Split flags ----
helper.define_flags('seed')
flags.DEFINE_float('test_fraction', 0.5,
                   'Fraction of the labelled devel videos moved to test, in (0, 1); rounded, '
                   'keeping at least one video in each set.')
flags.register_validator('test_fraction', lambda value: 0 < value < 1,
                         message='--test_fraction must be strictly between 0 and 1')
flags.DEFINE_integer('balance_trials', 1,
                     'Number of seeded splits tried; the one whose devel and test label '
                     'distributions are closest (smallest sum of KS statistics) is kept.',
                     lower_bound=1)
helper.define_flags('verbose')


def main(argv):
    del argv  # unused
    muse_partition = paths.MuseLayout(FLAGS.muse_dir).partition_path
    output = FLAGS.output or paths.partition_path(FLAGS.work_dir)
    if os.path.realpath(output) == os.path.realpath(muse_partition):
        raise app.UsageError('--output must not overwrite MuSe-CaR\'s own partition %s'
                             % muse_partition)
    partition = paths.read_partition(muse_partition)
    print('Current partition (%s):\n%s\n' % (muse_partition,
                                             splitting.format_partition(partition)))

    labelled = splitting.labelled_ids(FLAGS.work_dir, partition)
    splitting.report_left_out(partition, labelled, FLAGS.work_dir)
    train = [i for i, p in partition.items() if p == 'train' and i in labelled]
    devel = [i for i, p in partition.items() if p == 'devel' and i in labelled]
    if len(devel) < 2:
        raise helper.InputError(muse_partition, None, 'devel has %d labelled video(s); at least '
                                '2 are needed to split it' % len(devel))

    splits = list(splitting.candidate_splits(devel, FLAGS.test_fraction, FLAGS.seed,
                                             FLAGS.balance_trials))
    trial, statistics = splitting.choose_split(splitting.read_label_values(FLAGS.work_dir, devel),
                                               splits)
    print('Balance statistic (sum over %s of the KS statistic between devel and test frame '
          'values; lower is closer): trial 0: %.4f; chosen: trial %d of %d: %.4f\n'
          % (' and '.join(paths.DIMENSIONS), statistics[0], trial, len(splits),
             statistics[trial]))

    new = splitting.new_partition(train, *splits[trial])
    helper.write_csv(output, ('Id', 'Proposal'), new.items())
    print('New partition (%s):\n%s' % (output, splitting.format_partition(new)))
    logging.info('partition written to %s: %d train, %d devel, %d test videos (seed %d)', output,
                 len(train), len(splits[trial][0]), len(splits[trial][1]), FLAGS.seed)
    return 0


if __name__ == '__main__':
    helper.run(main)
