"""Step 4 (optional): how arousal and valence are distributed in each set.

Reads the partition file (--partition, as partition_generator.py writes it)
and the labels of every recording it lists (<work_dir>/labels/<Id>.csv), then
- prints a table of n (frames), mean, std (population, ddof=0), min and max
  per dimension and set, and writes it to <plot_dir>/label_statistics.csv;
- draws the distribution of each dimension for the train, devel and test sets
  as curves over common bins, normalised (<dimension>_density.png) and as raw
  frame counts (<dimension>_counts.png), drawn on matplotlib's Agg canvas
  (no display needed).
A recording of the partition without a labels file is an error naming the
file; every such file is listed and nothing is written.

    python label_distribution_analysis.py --work_dir . --bins 50
"""
import logging
import os

from absl import app, flags
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np

import helper

# Every flag allows override: the pipeline's scripts share flag names
# (--work_dir, --verbose, ...) and tests import several of them into one
# process, which absl otherwise refuses.
FLAGS = flags.FLAGS
flags.DEFINE_string('work_dir', helper.DEFAULT_WORK_DIR,
                    'Work directory holding labels/ (from label_generator.py).',
                    allow_override=True)
flags.DEFINE_string('partition', None,
                    'Partition file, header Id,Proposal (default <work_dir>/partition.csv).',
                    allow_override=True)
flags.DEFINE_string('plot_dir', None,
                    'Where the PNG curves and label_statistics.csv go (default <work_dir>/plots).',
                    allow_override=True)
flags.DEFINE_integer('bins', 50, 'Number of histogram bins of each curve.', lower_bound=1,
                     allow_override=True)
flags.DEFINE_boolean('verbose', False, 'Show development messages.', allow_override=True)

STATISTICS_HEADER = ('dimension', 'set', 'n', 'mean', 'std', 'min', 'max')
COLOURS = {'train': 'tab:blue', 'devel': 'tab:orange', 'test': 'tab:green'}


def read_set_values(work_dir, partition):
    """({set: float array [frames, dimensions]} of every non-empty set, [errors]):
    the errors (helper.InputError) of every unreadable labels file, or of a
    partition without any label row."""
    values, errors = {}, []
    for portion in helper.PORTIONS:
        frames = []
        for recording_id in (i for i, p in partition.items() if p == portion):
            try:
                frames.append(helper.read_labels(helper.label_path(work_dir, recording_id))[1])
            except helper.InputError as error:
                errors.append(error)
        if frames:
            values[portion] = np.concatenate(frames).astype(np.float64)
    if not values and not errors:
        errors.append(helper.InputError(helper.labels_dir(work_dir), None,
                                        'no label rows for any recording of the partition'))
    for portion in helper.PORTIONS:
        if portion not in values and not errors:
            logging.warning('set %s has no labelled frames; it is left out', portion)
    return values, errors


def statistics_rows(values):
    """(dimension, set, n, mean, std, min, max) for every dimension and set."""
    return [(dimension, portion, len(frames), float(np.mean(frames[:, d])),
             float(np.std(frames[:, d])), float(np.min(frames[:, d])),
             float(np.max(frames[:, d])))
            for d, dimension in enumerate(helper.DIMENSIONS)
            for portion, frames in values.items()]


def format_table(rows):
    lines = ['%-10s %-6s %8s %8s %8s %8s %8s' % STATISTICS_HEADER]
    lines += ['%-10s %-6s %8d %8.4f %8.4f %8.4f %8.4f' % row for row in rows]
    return '\n'.join(lines)


def distribution_curves(values, dimension_index, bins, density):
    """(bin edges, {set: curve}), the edges shared by every set so that the
    curves compare: frames per bin, or a density that integrates to 1."""
    edges = np.histogram_bin_edges(
        np.concatenate([frames[:, dimension_index] for frames in values.values()]), bins=bins)
    curves = {portion: np.histogram(frames[:, dimension_index], bins=edges, density=density)[0]
              for portion, frames in values.items()}
    return edges, curves


def plot_curves(path, dimension, edges, curves, frame_counts, density):
    """One PNG, a curve per set over the bin centres, written atomically."""
    centres = (edges[:-1] + edges[1:]) / 2
    figure = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for portion, curve in curves.items():
        axes.plot(centres, curve, color=COLOURS[portion], linewidth=1.8,
                  label='%s (%d frames)' % (portion, frame_counts[portion]))
    axes.set_xlabel(dimension)
    axes.set_ylabel('density' if density
                    else 'frames per bin (bin width %.3g)' % (edges[1] - edges[0]))
    axes.set_title('%s distribution per set (%s)'
                   % (dimension.capitalize(), 'normalised' if density else 'counts'))
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    with helper.atomic_output(path) as tmp_path:
        figure.savefig(tmp_path, format='png')


def plot_distributions(values, plot_dir, bins):
    """<dimension>_density.png and <dimension>_counts.png for every dimension."""
    frame_counts = {portion: len(frames) for portion, frames in values.items()}
    paths = []
    for d, dimension in enumerate(helper.DIMENSIONS):
        for density in (True, False):
            edges, curves = distribution_curves(values, d, bins, density)
            path = os.path.join(plot_dir, '%s_%s.png'
                                % (dimension, 'density' if density else 'counts'))
            plot_curves(path, dimension, edges, curves, frame_counts, density)
            paths.append(path)
    return paths


def main(argv):
    del argv  # unused
    helper.setup_logging(FLAGS.verbose)
    partition_file = FLAGS.partition or helper.partition_path(FLAGS.work_dir)
    plot_dir = FLAGS.plot_dir or helper.plots_dir(FLAGS.work_dir)
    try:
        partition = helper.read_partition(partition_file)
    except helper.InputError as error:
        logging.error('%s', error)
        return 1
    values, errors = read_set_values(FLAGS.work_dir, partition)
    if errors:
        for error in errors:
            logging.error('%s', error)
        logging.error('nothing written to %s', plot_dir)
        return 1

    rows = statistics_rows(values)
    print(format_table(rows))
    statistics_file = os.path.join(plot_dir, 'label_statistics.csv')
    helper.write_csv(statistics_file, STATISTICS_HEADER, rows)
    paths = plot_distributions(values, plot_dir, FLAGS.bins)
    logging.info('statistics written to %s; plots: %s', statistics_file, ' '.join(paths))
    return 0


if __name__ == '__main__':
    app.run(main)
