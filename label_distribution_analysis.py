"""Step 4 (optional): how arousal and valence are distributed in each set.

Reads the partition file (--partition, as partition_generator.py writes it;
video ids) and the labels of every segment of every video it lists
(<work_dir>/labels/<Id>/<Id>_<seg>.csv), then
- prints a table of n (frames), mean, std (population, ddof=0), min and max
  per dimension and set, and writes it to <plot_dir>/label_statistics.csv;
- draws the distribution of each dimension for the train, devel and test sets
  as curves over common bins, normalised (<dimension>_density.png) and as raw
  frame counts (<dimension>_counts.png).
A video of the partition without label files is an error naming its folder;
every such video is listed and nothing is written.

    python label_distribution_analysis.py --work_dir . --bins 50
"""
import logging
import os

from absl import flags

import helper
from ser import distribution
from ser import paths

FLAGS = flags.FLAGS

# ---- Input flags ----
helper.define_flags('work_dir', 'partition')

# ---- Output flags ----
flags.DEFINE_string('plot_dir', None,
                    'Where the PNG curves and label_statistics.csv go (default <work_dir>/plots).')
flags.DEFINE_integer('bins', 50, 'Number of histogram bins of each curve.', lower_bound=1)
helper.define_flags('verbose')


def main(argv):
    del argv  # unused
    partition_file = FLAGS.partition or paths.partition_path(FLAGS.work_dir)
    plot_dir = FLAGS.plot_dir or paths.plots_dir(FLAGS.work_dir)
    partition = paths.read_partition(partition_file)
    values, errors = distribution.read_set_values(FLAGS.work_dir, partition)
    if errors:
        for error in errors:
            logging.error('%s', error)
        logging.error('nothing written to %s', plot_dir)
        return 1

    rows = distribution.statistics_rows(values)
    print(distribution.format_table(rows))
    statistics_file = os.path.join(plot_dir, 'label_statistics.csv')
    helper.write_csv(statistics_file, distribution.STATISTICS_HEADER, rows)
    plots = distribution.plot_distributions(values, plot_dir, FLAGS.bins)
    logging.info('statistics written to %s; plots: %s', statistics_file, ' '.join(plots))
    return 0


if __name__ == '__main__':
    helper.run(main)
