"""Step 2 of the pipeline: one label timeline per segment.

MuSe-CaR gives arousal and valence in separate files per video,
<task_dir>/label_segments/<dimension>/<Id>.csv (header
timestamp,value,segment_id; ms of video time, a row every 250 ms; a segment's
last timestamp is repeated as the next segment's first row). For every video
of metadata/partition.csv this joins the two dimensions on timestamp, segment
by segment, into <work_dir>/labels/<Id>/<Id>_<seg>.csv, header
timestamp,arousal,valence, in ms from the segment's first label timestamp
(where its audio starts), one row per label timestamp of the segment: the
repeated boundary row belongs to both segments.

Errors name file and row, and the other segments are still done: a timestamp
present in one dimension and not the other, label rows of a segment without
audio, a timestamp off the 250-ms grid. Videos with no label files (the
official test set, whose labels are withheld) are skipped and counted; one
with only one of the two files is an error. The exit status is non-zero if
anything failed. Existing outputs are kept unless --overwrite, so an
interrupted run resumes.

    python label_generator.py --muse_dir ./MuSe-CaR --work_dir .
"""
import collections
import logging
import os

from absl import flags

import helper
from ser import muse
from ser import paths

FLAGS = flags.FLAGS

# ---- Input flags ----
helper.define_flags('muse_dir', 'task_dir', 'ids')

# ---- Output flags ----
helper.define_flags('work_dir', 'overwrite', 'verbose')

LABEL_HEADER = ('timestamp',) + paths.DIMENSIONS


def write_video_labels(layout, video_id, counts):
    """Write the labels of one video's segments; count what happened; return
    the errors."""
    joined, errors = muse.video_labels(layout, video_id)
    if not joined and not errors:
        counts['unlabelled videos'] += 1
        return []
    for name, rows in joined.items():
        output = paths.label_path(FLAGS.work_dir, name)
        if os.path.exists(output) and not FLAGS.overwrite:
            counts['skipped'] += 1
            continue
        helper.write_csv(output, LABEL_HEADER, rows)
        counts['written'] += 1
        counts['rows'] += len(rows)
        helper.development_msg('%s: %d rows written to %s', name, len(rows), output)
    unlabelled = [name for name in layout.audio_segments(video_id)
                  if name not in joined and name not in errors]
    if joined and unlabelled:
        logging.warning('video %s: segment(s) with audio but no label rows: %s', video_id,
                        ' '.join(unlabelled))
        counts['segments without labels'] += len(unlabelled)
    return list(errors.values())


def main(argv):
    del argv  # unused
    layout = paths.MuseLayout(FLAGS.muse_dir, FLAGS.task_dir)
    counts, errors = collections.Counter(), []
    for video_id in paths.select_videos(layout, FLAGS.ids):
        errors += write_video_labels(layout, video_id, counts)
    for error in errors:
        logging.error('%s', error)
    logging.info('labels: %d segment(s) written, %d skipped (already there; --overwrite rewrites '
                 'them), %d failed; %d rows; %d video(s) without label files (labels withheld, '
                 'e.g. the official test set); %d segment(s) with audio but no label rows',
                 counts['written'], counts['skipped'], len(errors), counts['rows'],
                 counts['unlabelled videos'], counts['segments without labels'])
    return 1 if errors else 0


if __name__ == '__main__':
    helper.run(main)
