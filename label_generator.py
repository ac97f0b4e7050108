"""Step 2 of the pipeline: one label timeline per recording.

MuSe-CaR gives arousal and valence in separate files of annotated segments,
label_segments/<dimension>/<Id>.csv (header timestamp,value,segment_id;
timestamp in ms, one row every 250 ms; a timestamp off that grid is an error).
For every recording of MuSe-CaR/metadata/partition.csv this joins the two
dimensions on timestamp into <work_dir>/labels/<Id>.csv, header
timestamp,arousal,valence, sorted by time.

Adjacent segments repeat their boundary timestamp: one row per timestamp is
kept and the repeats are counted as dropped (a repeat carrying a different
value keeps the first value, and is reported). A timestamp present in one
dimension and not in the other is an error naming file, row and timestamp.
Recordings with no label file at all (the official test set, whose labels are
withheld) are skipped and counted; one with only one of the two files is an
error. A bad recording is reported and the others still processed; the exit
status is non-zero if any failed. Existing outputs are kept unless
--overwrite, so an interrupted run resumes where it stopped.

    python label_generator.py --muse_dir ./MuSe-CaR --work_dir .
"""
import collections
import functools
import itertools
import logging
import os

from absl import app, flags

import helper

# Every flag allows override: the pipeline's scripts share flag names
# (--work_dir, --verbose, ...) and tests import several of them into one
# process, which absl otherwise refuses.
FLAGS = flags.FLAGS
flags.DEFINE_string('muse_dir', helper.DEFAULT_MUSE_DIR,
                    'MuSe-CaR directory: metadata/partition.csv and label_segments/ are read.',
                    allow_override=True)
flags.DEFINE_string('work_dir', helper.DEFAULT_WORK_DIR,
                    'Output root: the joined labels go to <work_dir>/labels/<Id>.csv.',
                    allow_override=True)
flags.DEFINE_boolean('overwrite', False,
                     'Rewrite label files that already exist (by default they are skipped, '
                     'so an interrupted run resumes).', allow_override=True)
flags.DEFINE_list('ids', None,
                  'Only these recording ids (comma separated); default: every recording '
                  'of the partition.', allow_override=True)
flags.DEFINE_boolean('verbose', False, 'Show development messages.', allow_override=True)

# Timestamps are read as numbers so that '250.0' is accepted; they must lie on the grid.
SEGMENT_COLUMNS = [('timestamp', float), ('value', float), ('segment_id', str)]
LABEL_HEADER = ('timestamp',) + helper.DIMENSIONS

# One dimension of one recording: values {timestamp: first value}, first_line
# {timestamp: line of that value in the file}, duplicates (number of repeated
# rows dropped) and conflicts [(timestamp, first line, repeat line)] of the
# repeats carrying another value.
Segments = collections.namedtuple('Segments', 'path values first_line duplicates conflicts')
# What happened to one recording: status is written, skipped, unlabelled or failed.
Outcome = collections.namedtuple('Outcome', 'recording_id status rows duplicates conflicts error')


def read_segments(path):
    """One dimension's label segments, one value per timestamp (the first)."""
    rows = helper.read_table(path, SEGMENT_COLUMNS, line_numbers=True)
    if not rows:
        raise helper.InputError(path, None, 'no label rows after the header')
    values, first_line, duplicates, conflicts = {}, {}, 0, []
    for line, (timestamp, value, _) in rows:
        # data_generator.py frames the audio on this grid
        if timestamp < 0 or timestamp % helper.LABEL_STEP_MS:
            raise helper.InputError(path, line,
                                    'timestamp %g ms is not a non-negative multiple of %d ms'
                                    % (timestamp, helper.LABEL_STEP_MS))
        timestamp = int(timestamp)
        if timestamp not in values:
            values[timestamp], first_line[timestamp] = value, line
            continue
        duplicates += 1
        if value != values[timestamp]:
            conflicts.append((timestamp, first_line[timestamp], line))
    return Segments(path, values, first_line, duplicates, conflicts)


def report_conflicts(segments):
    """Warn when a repeated boundary timestamp carries a different value."""
    if not segments.conflicts:
        return
    timestamp, first, repeat = segments.conflicts[0]
    logging.warning('%s: %d repeated timestamp(s) carry a different value; the first value '
                    'is kept (e.g. %d ms, rows %d and %d)', segments.path,
                    len(segments.conflicts), timestamp, first, repeat)


def join_dimensions(arousal, valence):
    """Rows (timestamp, arousal, valence) sorted by time. Every timestamp must
    be labelled in both dimensions."""
    for present, other in itertools.permutations((arousal, valence)):
        missing = sorted(set(present.values) - set(other.values))
        if missing:
            raise helper.InputError(
                present.path, present.first_line[missing[0]], 'timestamp %d ms is not in %s (%d timestamp(s) of this '
                'file are missing there)' % (missing[0], other.path, len(missing)))
    return [(timestamp, arousal.values[timestamp], valence.values[timestamp])
            for timestamp in sorted(arousal.values)]


def generate_labels(recording_id, muse_dir, work_dir, overwrite):
    """Join one recording's label segments into its labels file."""
    output = helper.label_path(work_dir, recording_id)
    if os.path.exists(output) and not overwrite:
        return Outcome(recording_id, 'skipped', 0, 0, 0, None)
    paths = [helper.label_segment_path(muse_dir, d, recording_id) for d in helper.DIMENSIONS]
    found = [os.path.isfile(path) for path in paths]
    if not any(found):
        return Outcome(recording_id, 'unlabelled', 0, 0, 0, None)
    try:
        if not all(found):
            raise helper.InputError(paths[found.index(False)], None,
                                    'file not found, although %s exists'
                                    % paths[found.index(True)])
        arousal, valence = (read_segments(path) for path in paths)
        rows = join_dimensions(arousal, valence)
        for segments in (arousal, valence):
            report_conflicts(segments)
        helper.write_csv(output, LABEL_HEADER, rows)
    except helper.InputError as error:
        return Outcome(recording_id, 'failed', 0, 0, 0, str(error))
    helper.development_msg('%s: %d rows written to %s', recording_id, len(rows), output)
    return Outcome(recording_id, 'written', len(rows), arousal.duplicates + valence.duplicates,
                   len(arousal.conflicts) + len(valence.conflicts), None)


def summarise(outcomes):
    """Log what happened; return the number of failed recordings."""
    by_status = collections.defaultdict(list)
    for outcome in outcomes:
        by_status[outcome.status].append(outcome)
    for outcome in by_status['failed']:
        logging.error('recording %s failed: %s', outcome.recording_id, outcome.error)
    if by_status['unlabelled']:
        logging.info('no label files (labels withheld, e.g. the official test set), skipped: %s',
                     ' '.join(o.recording_id for o in by_status['unlabelled']))
    logging.info('labels: %d recording(s) written, %d skipped (already there; --overwrite '
                 'rewrites them), %d unlabelled, %d failed; %d rows, %d duplicate timestamp(s) '
                 'dropped (%d with a different value)',
                 len(by_status['written']), len(by_status['skipped']),
                 len(by_status['unlabelled']), len(by_status['failed']),
                 sum(o.rows for o in outcomes), sum(o.duplicates for o in outcomes),
                 sum(o.conflicts for o in outcomes))
    return len(by_status['failed'])


def main(argv):
    del argv  # unused
    helper.setup_logging(FLAGS.verbose)
    try:
        recording_ids = helper.select_recordings(FLAGS.muse_dir, FLAGS.ids)
    except helper.InputError as error:
        logging.error('%s', error)
        return 1
    task = functools.partial(generate_labels, muse_dir=FLAGS.muse_dir, work_dir=FLAGS.work_dir,
                             overwrite=FLAGS.overwrite)
    outcomes = list(helper.parallel_map(task, recording_ids, workers=1, description='labels'))
    return 1 if summarise(outcomes) else 0


if __name__ == '__main__':
    app.run(main)
