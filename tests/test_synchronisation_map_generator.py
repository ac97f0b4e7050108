"""synchronisation_map_generator.py: word-level forced alignment with aeneas.

A small demo corpus (make_demo_corpus.py: espeak speech with pauses, fillers,
several voices and audio formats) gives recordings whose true word timings are
known, so alignment accuracy is checked against them, not against numbers
copied from a previous run."""
import logging
import os
import shutil

import numpy as np
import pytest
import soundfile
import soxr
from absl import flags

import helper
import make_demo_corpus
import synchronisation_map_generator as smg
from label_fixtures import write

FLAGS = flags.FLAGS
# Targets of the brief, on true word timings.
MAX_MEAN_START_ERROR = 0.05
MIN_MIDPOINT_INSIDE = 0.95
IDS = ['1', '2', '3', '4']


def run_main(muse_dir, work_dir, *extra):
    """main() as the command line would call it; flags are reset afterwards.
    Logging is left to pytest (setup_logging would replace caplog's handler)."""
    argv = ['synchronisation_map_generator.py', '--muse_dir=%s' % muse_dir,
            '--work_dir=%s' % work_dir, '--truth_dir=', '--workers=1'] + list(extra)
    FLAGS.unparse_flags()
    FLAGS(argv)
    setup_logging, helper.setup_logging = helper.setup_logging, lambda verbose: None
    try:
        return smg.main([])
    finally:
        helper.setup_logging = setup_logging
        FLAGS.unparse_flags()


def read_sync_map(work_dir, recording_id):
    return helper.read_table(helper.sync_map_path(work_dir, recording_id),
                             [('id', str), ('start', float), ('end', float), ('word', str)])


def read_transcript(muse_dir, recording_id):
    return helper.read_table(helper.transcript_path(muse_dir, recording_id),
                             smg.TRANSCRIPT_COLUMNS)


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    """(muse_dir, truth_dir) of 4 recordings x 20 s."""
    root = tmp_path_factory.mktemp('sync_corpus')
    muse_dir, truth_dir = str(root / 'MuSe-CaR'), str(root / 'truth')
    make_demo_corpus.generate_corpus(muse_dir, truth_dir, videos=len(IDS), seconds_per_video=20,
                                     seed=1, workers=1)
    return muse_dir, truth_dir


@pytest.fixture(scope='module')
def aligned(corpus, tmp_path_factory):
    """The whole corpus aligned by main() with two workers and the truth:
    (work_dir, exit status, log text)."""
    muse_dir, truth_dir = corpus
    work_dir = str(tmp_path_factory.mktemp('sync_work'))
    handler, root = _LogCollector(), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        status = run_main(muse_dir, work_dir, '--workers=2', '--truth_dir=%s' % truth_dir)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    return work_dir, status, '\n'.join(handler.messages)


class _LogCollector(logging.Handler):
    """caplog is function-scoped; a module fixture collects its own log."""

    def __init__(self):
        super().__init__(level=logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


# --------------------------------------------------------------------------
# Output format and accuracy
# --------------------------------------------------------------------------
def test_sync_maps_have_the_contract_format(corpus, aligned):
    muse_dir, _ = corpus
    work_dir, status, _ = aligned
    assert status == 0
    for recording_id in IDS:
        path = helper.sync_map_path(work_dir, recording_id)
        with open(path, encoding='utf-8') as handle:
            assert handle.readline() == 'id,start,end,word\n'
        rows = read_sync_map(work_dir, recording_id)
        expected = [('s%dw%d' % (s, w), word)
                    for s, (_, _, text) in enumerate(read_transcript(muse_dir, recording_id))
                    for w, word in enumerate(helper.normalise_words(text))]
        assert [(row[0], row[3]) for row in rows] == expected
        starts = np.array([row[1] for row in rows])
        ends = np.array([row[2] for row in rows])
        assert np.all(ends >= starts)
        assert np.all(starts[1:] >= ends[:-1] - 1e-9)  # in order, never overlapping


def test_words_stay_inside_their_sentence(corpus, aligned):
    muse_dir, _ = corpus
    work_dir = aligned[0]
    for recording_id in IDS:
        spans = read_transcript(muse_dir, recording_id)
        for row_id, start, end, _ in read_sync_map(work_dir, recording_id):
            sentence_start, sentence_end, _ = spans[int(row_id[1:row_id.index('w')])]
            assert sentence_start - 0.011 <= start <= end <= sentence_end + 0.011


def test_alignment_meets_the_accuracy_targets_on_true_timings(corpus, aligned):
    _, truth_dir = corpus
    work_dir = aligned[0]
    for recording_id in IDS:
        rows = read_sync_map(work_dir, recording_id)
        accuracy = smg.alignment_accuracy(rows, smg.read_truth(truth_dir, recording_id))
        assert accuracy['words'] == len(rows) > 0
        assert accuracy['mean_abs_start_error'] <= MAX_MEAN_START_ERROR, recording_id
        assert accuracy['midpoint_inside_fraction'] >= MIN_MIDPOINT_INSIDE, recording_id


def test_summary_reports_counts_speed_and_accuracy(aligned):
    _, _, log = aligned
    assert '4 recording(s) done, 0 skipped' in log
    assert '0 failed' in log
    assert 's of audio per wall second' in log
    assert 'accuracy vs truth (4 recording(s)' in log


def test_fillers_are_dropped_from_the_words(corpus, aligned):
    muse_dir, _ = corpus
    texts = [text for i in IDS for _, _, text in read_transcript(muse_dir, i)]
    assert any('<filler>' in text for text in texts)  # the corpus exercises fillers
    words = [row[3] for i in IDS for row in read_sync_map(aligned[0], i)]
    assert not any('filler' in word or '<' in word for word in words)
    for text in texts + ['<filler> Well, <laugh>it is <filler>', "Don't<filler>stop!"]:
        tokens = smg.sentence_tokens(text)
        assert [t for t in tokens if t is not None] == helper.normalise_words(text)
        assert tokens.count(None) == text.count('<')


def test_filler_only_text_gives_no_rows_and_words_keep_sentence_numbers(corpus):
    muse_dir, _ = corpus
    samples = helper.read_audio(helper.audio_path(muse_dir, '1'), smg.SAMPLE_RATE)
    (start, end, text), = read_transcript(muse_dir, '1')[:1]
    rows, fallbacks = smg.align_sentences(samples, smg.SAMPLE_RATE,
                                          [(0.0, 0.2, '<filler>'), (start, end, text)])
    assert fallbacks == []
    assert rows[0][0] == 's1w0'
    assert [row[3] for row in rows] == helper.normalise_words(text)


# --------------------------------------------------------------------------
# Audio of any rate and channel count
# --------------------------------------------------------------------------
def test_any_sample_rate_and_stereo_align_alike(corpus, tmp_path):
    muse_dir, truth_dir = corpus
    samples = helper.read_audio(helper.audio_path(muse_dir, '2'), 16000)
    sentences = read_transcript(muse_dir, '2')
    reference, _ = smg.align_sentences(samples, 16000, sentences)
    truth = smg.read_truth(truth_dir, '2')
    for rate, channels in ((44100, 2), (22050, 1), (48000, 2)):
        path = str(tmp_path / ('%d_%d.wav' % (rate, channels)))
        resampled = soxr.resample(samples, 16000, rate)
        # Channels differ in level, as real stereo does; the mix is what is aligned.
        audio = np.stack([resampled, 0.5 * resampled], axis=1) if channels == 2 else resampled
        soundfile.write(path, audio, rate)
        assert soundfile.info(path).channels == channels
        rows, fallbacks = smg.align_sentences(helper.read_audio(path, rate), rate, sentences)
        assert fallbacks == []
        assert [r[0] for r in rows] == [r[0] for r in reference]
        gaps = [abs(a[1] - b[1]) for a, b in zip(rows, reference)]
        assert np.mean(gaps) < 0.02, (rate, channels)
        accuracy = smg.alignment_accuracy(rows, truth)
        assert accuracy['mean_abs_start_error'] <= MAX_MEAN_START_ERROR
        assert accuracy['midpoint_inside_fraction'] >= MIN_MIDPOINT_INSIDE


def test_corpus_formats_are_all_aligned(corpus, aligned):
    """The generated corpus mixes formats (48 kHz stereo, 16 and 22.05 kHz
    mono); every one of its recordings was aligned by main()."""
    muse_dir, _ = corpus
    formats = {(soundfile.info(helper.audio_path(muse_dir, i)).samplerate,
                soundfile.info(helper.audio_path(muse_dir, i)).channels) for i in IDS}
    assert len(formats) >= 2
    assert all(os.path.exists(helper.sync_map_path(aligned[0], i)) for i in IDS)


# --------------------------------------------------------------------------
# Fallback: a sentence aeneas cannot align
# --------------------------------------------------------------------------
def test_sentence_without_speech_falls_back_to_character_spread(corpus):
    muse_dir, _ = corpus
    samples = helper.read_audio(helper.audio_path(muse_dir, '1'), 16000)
    rng = np.random.default_rng(0)
    silence = (0.001 * rng.standard_normal(3 * 16000)).astype(np.float32)
    samples = np.concatenate([samples, silence])
    duration = len(samples) / 16000
    ghost_sentence = (duration - 2.5, duration - 1.0, 'Ghost, words here!')
    sentences = read_transcript(muse_dir, '1') + [ghost_sentence]
    rows, fallbacks = smg.align_sentences(samples, 16000, sentences)
    ghost = len(sentences) - 1
    assert [index for index, _ in fallbacks] == [ghost]
    spread = [row for row in rows if row[0].startswith('s%dw' % ghost)]
    start = duration - 2.5
    # 'ghost' and 'words' take 5/14 of the 1.5 s each, 'here' the last 4/14.
    expected = [(start, start + 1.5 * 5 / 14), (start + 1.5 * 5 / 14, start + 1.5 * 10 / 14),
                (start + 1.5 * 10 / 14, start + 1.5)]
    assert [row[3] for row in spread] == ['ghost', 'words', 'here']
    np.testing.assert_allclose([row[1:3] for row in spread], expected, atol=0.001)


def test_fallback_is_counted_and_reported_with_file_and_row(corpus, tmp_path, caplog):
    muse_dir, _ = corpus
    bad_dir = str(tmp_path / 'MuSe-CaR')
    samples = helper.read_audio(helper.audio_path(muse_dir, '1'), 16000)
    padded = np.concatenate([samples, np.zeros(3 * 16000, dtype=np.float32)])
    os.makedirs(os.path.join(bad_dir, 'audio'))
    soundfile.write(os.path.join(bad_dir, 'audio', 'x.wav'), padded, 16000)
    duration = len(padded) / 16000
    with open(helper.transcript_path(muse_dir, '1'), encoding='utf-8') as handle:
        transcript = handle.read()
    row = transcript.count('\n') + 1
    write(helper.transcript_path(bad_dir, 'x'),
          transcript + '%.3f,%.3f,Nobody speaks here\n' % (duration - 2.5, duration - 1))
    write(helper.muse_partition_path(bad_dir), 'Id,Proposal\nx,train\n')
    with caplog.at_level(logging.INFO):
        status = run_main(bad_dir, str(tmp_path / 'work'))
    assert status == 0
    assert '1 fallback(s)' in caplog.text
    assert '%s, row %d: sentence not aligned' % (helper.transcript_path(bad_dir, 'x'), row) \
        in caplog.text
    assert [r[3] for r in read_sync_map(str(tmp_path / 'work'), 'x')][-3:] == \
        ['nobody', 'speaks', 'here']


# --------------------------------------------------------------------------
# Resume, --overwrite, --ids, interrupted writes
# --------------------------------------------------------------------------
def copy_corpus(corpus, tmp_path, ids=IDS[:2]):
    """A corpus of a few recordings of the shared one, with its own partition."""
    muse_dir, _ = corpus
    copy = str(tmp_path / 'MuSe-CaR')
    for recording_id in ids:
        for path in (helper.audio_path(muse_dir, recording_id),
                     helper.transcript_path(muse_dir, recording_id)):
            target = path.replace(muse_dir, copy)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy(path, target)
    write(helper.muse_partition_path(copy),
          'Id,Proposal\n' + ''.join('%s,train\n' % i for i in ids))
    return copy


def test_rerun_skips_finished_recordings_and_overwrite_redoes_them(corpus, tmp_path, caplog):
    muse_dir, truth_dir = copy_corpus(corpus, tmp_path), corpus[1]
    work_dir = str(tmp_path / 'work')
    assert run_main(muse_dir, work_dir) == 0
    first = read_sync_map(work_dir, '1')
    path = helper.sync_map_path(work_dir, '1')
    write(path, 'id,start,end,word\nstale,0,1,stale\n')
    with caplog.at_level(logging.INFO):
        assert run_main(muse_dir, work_dir) == 0
    assert '0 recording(s) done, 2 skipped' in caplog.text
    assert read_sync_map(work_dir, '1') == [('stale', 0.0, 1.0, 'stale')]
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert run_main(muse_dir, work_dir, '--overwrite') == 0
    assert '2 recording(s) done, 0 skipped' in caplog.text
    again = read_sync_map(work_dir, '1')
    # Same words and ids; times need not match to the ms, as espeak's voice
    # flutter carries over from one synthesis to the next (see the module doc).
    assert [(r[0], r[3]) for r in again] == [(r[0], r[3]) for r in first]
    accuracy = smg.alignment_accuracy(again, smg.read_truth(truth_dir, '1'))
    assert accuracy['mean_abs_start_error'] <= MAX_MEAN_START_ERROR


def test_ids_restricts_the_run(corpus, tmp_path):
    muse_dir = copy_corpus(corpus, tmp_path)
    work_dir = str(tmp_path / 'work')
    assert run_main(muse_dir, work_dir, '--ids=2') == 0
    assert sorted(os.listdir(helper.sync_maps_dir(work_dir))) == ['2.csv']
    assert run_main(muse_dir, work_dir, '--ids=2,nope') == 1  # unknown id: nothing runs


def test_interrupted_write_leaves_no_file(corpus, tmp_path, monkeypatch):
    muse_dir = copy_corpus(corpus, tmp_path, ids=['1'])
    output = helper.sync_map_path(str(tmp_path / 'work'), '1')
    real_writer = helper.csv.writer

    class DyingWriter:
        """Writes the header, then dies half way through the rows, as Ctrl-C would."""

        def __init__(self, handle, **kwargs):
            self.writer = real_writer(handle, **kwargs)
            self.writerow = self.writer.writerow

        def writerows(self, rows):
            rows = list(rows)
            self.writer.writerows(rows[:len(rows) // 2])
            raise KeyboardInterrupt

    monkeypatch.setattr(helper.csv, 'writer', DyingWriter)
    with pytest.raises(KeyboardInterrupt):
        smg.generate_sync_map(smg.Job('1', muse_dir, output, 'eng', None))
    assert os.listdir(os.path.dirname(output)) == []


# --------------------------------------------------------------------------
# Bad input: errors name file, row and problem; other recordings go on
# --------------------------------------------------------------------------
def test_bad_recordings_are_reported_and_the_others_processed(corpus, tmp_path, caplog):
    muse_dir = copy_corpus(corpus, tmp_path, ids=['1'])
    audio = helper.audio_path(muse_dir, '1')
    header = 'start,end,sentence\n'
    duration = soundfile.info(audio).duration
    bad = {  # id: (transcript, problem expected in the message, row)
        'backwards': (header + '0.5,2.0,The boot is fine.\n3.0,2.5,It is great.\n',
                      'end must come after start', 3),
        'past_end': (header + '0.5,%.3f,The boot is fine.\n' % (duration + 5),
                     'past the end of the audio', 2),
        'empty': (header + '0.5,2.0,The boot is fine.\n\n2.5,3.0,""\n', 'has no words', 4),
        'punctuation': (header + '0.5,2.0,"?!, ..."\n', 'has no words', 2),
        'filler_only': (header + '0.5,2.0,<filler>\n', 'has no words', 2),
        'latin1': (header.encode() + b'0.5,2.0,The boot is fine.\n1,2,Caf\xe9 time.\n',
                   'not valid UTF-8', 3),
    }
    for recording_id, (transcript, _, _) in bad.items():
        shutil.copy(audio, audio.replace('/1.wav', '/%s.wav' % recording_id))
        write(helper.transcript_path(muse_dir, recording_id), transcript)
    write(helper.transcript_path(muse_dir, 'no_audio'), header + '0.5,2.0,Hello there.\n')
    write(audio.replace('/1.wav', '/garbage.wav'), b'RIFF\x00\x00\x00\x00WAVEnot really')
    write(helper.transcript_path(muse_dir, 'garbage'), header + '0.5,2.0,Hello there.\n')
    ids = ['1'] + list(bad) + ['no_audio', 'garbage']
    write(helper.muse_partition_path(muse_dir),
          'Id,Proposal\n' + ''.join('%s,train\n' % i for i in ids))
    work_dir = str(tmp_path / 'work')
    with caplog.at_level(logging.INFO):
        assert run_main(muse_dir, work_dir) == 1
    errors = {r.getMessage().split(' failed: ')[0].split()[-1]: r.getMessage()
              for r in caplog.records if r.levelno == logging.ERROR}
    for recording_id, (_, problem, row) in bad.items():
        message = errors['%s' % recording_id]
        assert '%s, row %d: ' % (helper.transcript_path(muse_dir, recording_id), row) in message
        assert problem in message
    assert 'no audio file for recording no_audio' in errors['no_audio']
    assert 'garbage.wav' in errors['garbage'] and 'unreadable audio' in errors['garbage']
    assert '1 recording(s) done, 0 skipped' in caplog.text
    assert '8 failed' in caplog.text
    assert os.listdir(helper.sync_maps_dir(work_dir)) == ['1.csv']


def test_malformed_partition_row_stops_the_run(corpus, tmp_path, caplog):
    muse_dir = copy_corpus(corpus, tmp_path, ids=['1'])
    write(helper.muse_partition_path(muse_dir), 'Id,Proposal\n1,train\n2,train,extra\n')
    with caplog.at_level(logging.INFO):
        assert run_main(muse_dir, str(tmp_path / 'work')) == 1
    assert '%s, row 3: expected 2 columns' % helper.muse_partition_path(muse_dir) in caplog.text
    assert not os.path.exists(helper.sync_maps_dir(str(tmp_path / 'work')))


def test_unknown_language_is_refused():
    with pytest.raises(flags.IllegalFlagValueError):
        FLAGS(['synchronisation_map_generator.py', '--language=klingon'])
    FLAGS.unparse_flags()


# --------------------------------------------------------------------------
# Accuracy measure
# --------------------------------------------------------------------------
def test_alignment_accuracy_measures_start_error_and_midpoints():
    truth = [(0.0, 1.0, 'The'), (1.0, 2.0, 'car'), (3.0, 4.0, "driver's")]
    rows = [('s0w0', 0.1, 0.5, 'the'), ('s0w1', 1.3, 3.5, 'car'), ('s1w0', 2.9, 3.9, "driver's")]
    accuracy = smg.alignment_accuracy(rows, truth)
    assert accuracy['words'] == 3
    assert accuracy['mean_abs_start_error'] == pytest.approx((0.1 + 0.3 + 0.1) / 3)
    # Midpoints 0.3 (inside), 2.4 (outside [1, 2]), 3.4 (inside).
    assert accuracy['midpoint_inside_fraction'] == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        smg.alignment_accuracy(rows[:2], truth)
    with pytest.raises(ValueError):
        smg.alignment_accuracy(rows[:2] + [('s1w0', 3, 4, 'drivers')], truth)
