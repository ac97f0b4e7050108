"""Step 1 of the pipeline: word-level synchronisation maps of MuSe-CaR segments.

For every segment with audio (<task_dir>/audio_segments/<Id>/<Id>_<seg>.wav)
of the videos in metadata/partition.csv, writes
<work_dir>/sync_maps/<Id>/<Id>_<seg>.csv, header id,start,end,word, in
seconds from the start of the segment's audio; words lower case, punctuation
stripped, fillers such as <filler> dropped.

--aligner given (default) converts MuSe's word times
(transcription_segments/<Id>/<Id>_<seg>.csv, integer ms) to segment-relative
seconds. --aligner phonetic re-aligns the segment's words, MuSe's text in
order, against its audio with PocketSphinx's acoustic model
(ser/phonetic_alignment.py; English), for corpora whose word times are
missing or wrong; a word its dictionary lacks gets its pronunciation from
espeak, and those words are counted. --aligner aeneas does the same with
aeneas (ser/alignment.py), for the other languages. A segment the phonetic
aligner cannot align is aligned by aeneas, one aeneas cannot gets its words
spread by character length; the summary counts which aligner gave the words.

A segment starts at its first label timestamp (label_segments/, the MuSe 2020
baseline's reading); for videos without label files, the test set, at its
first timestamp in a label-aligned feature file
(feature_segments/label_aligned/<feature>/<Id>.csv); without either, it is
placed by its words, aligned to its audio (ser/sync_maps.py). A segment that
cannot be placed is a warning, not a failure; each placement is counted. Word
times are read as ms of video time, or as segment-relative when only that
reading fits; each reading is counted. A segment without a transcript gets a
header-only sync map (kept downstream with zero embeddings) and is counted;
so is a segment whose audio duration and label span differ by more than 1 s.

Segments run in parallel; a bad input (missing or truncated audio, a bad
transcript row) is reported with file and row and the others are still done;
the exit status is non-zero if any failed. Existing sync maps are kept unless
--overwrite, so an interrupted run resumes. With --truth_dir
(word_timings/<Id>/<Id>_<seg>.csv, as make_demo_corpus.py writes them) the
summary also gives the accuracy against true timings, for either aligner.

    python synchronisation_map_generator.py --muse_dir ./MuSe-CaR --work_dir .
"""
import collections
import logging
import os
import time

from absl import flags

import helper
from ser import alignment, muse, sync_maps
from ser import paths

FLAGS = flags.FLAGS

# ---- Input flags ----
helper.define_flags('muse_dir', 'task_dir', 'ids', 'truth_dir')

# ---- Output flags ----
helper.define_flags('work_dir', 'overwrite')

# ---- Alignment flags ----
helper.define_flags('aligner', 'language')
flags.register_multi_flags_validator(
    ['aligner', 'language'],
    lambda values: values['aligner'] != alignment.PHONETIC
    or alignment.default_aligner(values['language']) == alignment.PHONETIC,
    message='--aligner phonetic aligns English only (--language eng); use --aligner aeneas for '
            'other languages')

# ---- Run flags ----
helper.define_flags('workers', 'verbose')


def plan(layout, videos):
    """(jobs to run, skipped names, errors, warnings) over the videos."""
    jobs, skipped, errors, warnings = [], [], [], []
    for video_id in videos:
        video_jobs, video_errors, video_warnings = sync_maps.plan_video(
            layout, video_id, FLAGS.work_dir, FLAGS.aligner, FLAGS.language,
            FLAGS.truth_dir or None)
        errors += video_errors
        warnings += video_warnings
        for job in video_jobs:
            if os.path.exists(job.output) and not FLAGS.overwrite:
                skipped.append(job.name)
            else:
                jobs.append(job)
    return jobs, skipped, errors, warnings


def summarise(outcomes, skipped, errors, wall_seconds, workers):
    """Log what happened; return the number of failures."""
    done = [o for o in outcomes if o.status == 'done']
    failed = [o for o in outcomes if o.status == 'failed']
    for outcome in done:
        if outcome.note:
            logging.warning('%s', outcome.note)
        if outcome.mismatch:
            logging.warning('%s', outcome.mismatch)
        for aligner, reason in outcome.failures:
            logging.warning('segment %s: the %s aligner could not align it (%s)%s', outcome.name,
                            aligner, reason, '; its words were spread over the audio by '
                            'character length' if outcome.method == alignment.SPREAD else '')
        if outcome.accuracy and 'error' in outcome.accuracy:
            logging.warning('segment %s: no accuracy against the truth: %s', outcome.name,
                            outcome.accuracy['error'])
    for error in errors:
        logging.error('%s', error)
    for outcome in failed:
        logging.error('segment %s failed: %s', outcome.name, outcome.error)
    readings = collections.Counter(o.reading for o in done if o.transcript)
    methods = collections.Counter(o.method for o in done if o.words)
    placements = collections.Counter(o.placement for o in done if o.transcript)
    logging.info('sync maps (--aligner %s): %d segment(s) done, %d skipped (already there; '
                 '--overwrite redoes them), %d failed; %d words; word times read as video ms in '
                 '%d segment(s), as segment-relative in %d, fitting neither in %d, not read in %d '
                 '(no start in the video); %d segment(s) without a transcript (header-only sync '
                 'map); %d whose audio and label span differ by > %g s', FLAGS.aligner, len(done),
                 len(skipped), len(failed) + len(errors), sum(o.words for o in done),
                 readings[muse.VIDEO_TIME], readings[muse.SEGMENT_TIME], readings[None],
                 readings[sync_maps.UNPLACED], sum(not o.transcript for o in done),
                 sum(bool(o.mismatch) for o in done),
                 sync_maps.MISMATCH_SECONDS)
    if FLAGS.aligner == 'given':
        logging.info('segment starts in the video: from label files in %d segment(s), from '
                     'label-aligned features in %d, from their words in %d; %d could not be '
                     'placed (warned)', placements[sync_maps.LABELS],
                     placements[sync_maps.FEATURES],
                     placements[sync_maps.WORDS], placements[sync_maps.UNPLACED])
    else:
        logging.info('words aligned by the phonetic aligner in %d segment(s), by aeneas in %d, '
                     'spread by character length in %d; %d fallback(s); %d word(s) pronounced by '
                     'espeak (not in the dictionary)', methods[alignment.PHONETIC],
                     methods[alignment.AENEAS], methods[alignment.SPREAD],
                     sum(len(o.failures) for o in done), sum(o.guessed for o in done))
    seconds = sum(o.seconds for o in done)
    if seconds:
        logging.info('speed: %.1f s of audio in %.1f s: %.1f s of audio per wall second '
                     '(%d worker(s), %.1f per worker)', seconds, wall_seconds,
                     seconds / wall_seconds, workers, seconds / wall_seconds / workers)
    accuracies = [o.accuracy for o in done if o.accuracy and o.accuracy['words']]
    if accuracies:
        pooled = alignment.pooled_accuracy(accuracies)
        logging.info('accuracy vs truth (%d segment(s), %d words): mean |start error| %.3f s, '
                     'midpoints inside the true word %.1f%%, mean |first-word start error| '
                     '%.3f s', pooled['recordings'], pooled['words'],
                     pooled['mean_abs_start_error'], 100 * pooled['midpoint_inside_fraction'],
                     pooled['first_start_error'])
    return len(failed) + len(errors)


def main(argv):
    del argv  # unused
    layout = paths.MuseLayout(FLAGS.muse_dir, FLAGS.task_dir)
    jobs, skipped, errors, warnings = plan(layout, paths.select_videos(layout, FLAGS.ids))
    for warning in warnings:
        logging.warning('%s', warning)
    workers = max(1, min(FLAGS.workers, len(jobs)))
    started = time.time()
    outcomes = list(helper.parallel_map(sync_maps.make_sync_map, jobs, workers, 'sync maps'))
    return 1 if summarise(outcomes, skipped, errors, time.time() - started, workers) else 0


if __name__ == '__main__':
    helper.run(main)
