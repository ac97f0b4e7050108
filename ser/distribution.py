"""How arousal and valence are distributed in each set: a table per dimension
and set, and distribution curves (normalised and raw counts) drawn on
matplotlib's Agg canvas (no display needed). Labels are read per video from
labels/<Id>/<Id>_<seg>.csv, every segment of the video.
"""
import logging
import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np

import helper
from ser import muse
from ser import defaults
from ser import paths

STATISTICS_HEADER = ('dimension', 'set', 'n', 'mean', 'std', 'min', 'max')
COLOURS = {'train': 'tab:blue', 'devel': 'tab:orange', 'test': 'tab:green'}


def video_frames(work_dir, video_id):
    """Float array [frames, dimensions] of every segment label file of a video."""
    segments = paths.work_segments(paths.labels_dir(work_dir), video_id)
    if not segments:
        raise helper.InputError(os.path.join(paths.labels_dir(work_dir), video_id), None,
                                'no segment label files <Id>_<seg>.csv for video %s (run '
                                'label_generator.py)' % video_id)
    return np.concatenate([muse.read_labels(paths.label_path(work_dir, name))[1]
                           for name in segments])


def read_set_values(work_dir, partition):
    """({set: float array [frames, dimensions]} of every non-empty set, [errors]):
    the errors (helper.InputError) of every video without readable labels, or
    of a partition without any label row."""
    values, errors = {}, []
    for portion in defaults.PORTIONS:
        frames = []
        for video_id in (i for i, p in partition.items() if p == portion):
            try:
                frames.append(video_frames(work_dir, video_id))
            except helper.InputError as error:
                errors.append(error)
        if frames:
            values[portion] = np.concatenate(frames).astype(np.float64)
    if not values and not errors:
        errors.append(helper.InputError(paths.labels_dir(work_dir), None,
                                        'no label rows for any video of the partition'))
    for portion in defaults.PORTIONS:
        if portion not in values and not errors:
            logging.warning('set %s has no labelled frames; it is left out', portion)
    return values, errors


def statistics_rows(values):
    """(dimension, set, n, mean, std, min, max) for every dimension and set."""
    return [(dimension, portion, len(frames), float(np.mean(frames[:, d])),
             float(np.std(frames[:, d])), float(np.min(frames[:, d])),
             float(np.max(frames[:, d])))
            for d, dimension in enumerate(paths.DIMENSIONS)
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
    written = []
    for d, dimension in enumerate(paths.DIMENSIONS):
        for density in (True, False):
            edges, curves = distribution_curves(values, d, bins, density)
            path = os.path.join(plot_dir, '%s_%s.png'
                                % (dimension, 'density' if density else 'counts'))
            plot_curves(path, dimension, edges, curves, frame_counts, density)
            written.append(path)
    return written
