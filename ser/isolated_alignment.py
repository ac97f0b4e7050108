"""Plain-text alignment (ser.alignment.align_text) for a long-running
service: every call runs in a child process forked from a clean helper
process, so that concurrent calls answer exactly as a fresh process would.

Why: espeak, which aeneas calls in-process through its C extension, carries
state from one synthesis to the next (the same words synthesised again come
out a few milliseconds longer or shorter), so in one long-lived process the
word times of a request would depend on the requests before it. The helper
process imports the aligner but never synthesises; each call is a fork of it,
so it starts from the state a fresh `predict.py --text` run starts from, and
several calls run side by side in separate processes (the C extension holds
the GIL, so threads would only take turns). A fork costs a few milliseconds;
the helper holds no TensorFlow.

    aligner = IsolatedAligner()
    words, fallbacks = aligner.align_text(samples_16k, 'plain text', 'eng')
    aligner.close()
"""

import gc
import logging
import multiprocessing.connection
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

import numpy as np

import helper

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Far more than aligning --max_audio_seconds of speech takes: only a hung child gets there.
ANSWER_TIMEOUT_SECONDS = 900
# How soon a caller's leaving stops its alignment.
CANCEL_POLL_SECONDS = 0.05
HELPER_COMMAND = ('import sys; from ser import isolated_alignment; '
                  'isolated_alignment.serve_forever(int(sys.argv[1]), sys.argv[2] == "1")')


class AlignmentProcessError(RuntimeError):
    """The helper process or one of its children died or failed: a fault of
    the service, not of the request."""


class IsolatedAligner:
    """align_text in a fresh fork of a clean helper process per call; safe to
    call from many threads at once."""

    def __init__(self, recogniser=False):
        self._lock = threading.Lock()
        self._process = self._control = None
        # Whether the helper also holds a recogniser for recognise().
        self.recogniser = recogniser
        self._start()

    def _start(self):
        control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        environment = dict(os.environ)
        environment['PYTHONPATH'] = os.pathsep.join(
            [REPOSITORY] + [p for p in [environment.get('PYTHONPATH')] if p])
        with theirs:
            self._process = subprocess.Popen(
                [sys.executable, '-c', HELPER_COMMAND, str(theirs.fileno()),
                 '1' if self.recogniser else '0'],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, env=environment)
        self._control = control

    def alive(self):
        return self._process.poll() is None

    def ensure_running(self):
        """Start a new helper process if the last one died (killed, out of
        memory); True when one runs."""
        with self._lock:
            if self._control is not None and not self.alive():
                logging.warning('the alignment helper process ended (status %s); starting '
                                'another', self._process.returncode)
                self._control.close()
                self._start()
            return self._control is not None

    def align_text(self, samples, text, language, cancelled=None):
        """ser.alignment.align_text(samples, alignment.SAMPLE_RATE, text,
        language) in a child process: (words, fallbacks), or the
        AlignmentError it raised. Once `cancelled` (an Event) is set, the
        child is killed and helper.Cancelled raised."""
        return self._in_child(('align', samples, text, language), cancelled)

    def recognise(self, samples, cancelled=None):
        """ser.recognition.recognise_words(samples) (16-kHz samples) in a
        child process, by the recogniser the helper built before forking (so
        each call starts from the same state); RecognitionError for audio it
        cannot recognise, helper.Cancelled as align_text."""
        if not self.recogniser:
            raise ValueError('this aligner was started without a recogniser')
        return self._in_child(('recognise', samples), cancelled)

    def _in_child(self, job, cancelled):
        try:
            return self._run_in_child(job, cancelled)
        except AlignmentProcessError:
            # The helper may have died between the look at it and the call
            # (killed, out of memory): once more, with a new one.
            if not self._helper_died():
                raise
            return self._run_in_child(job, cancelled)

    def _helper_died(self, wait_seconds=2.0):
        try:
            self._process.wait(timeout=wait_seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    def _run_in_child(self, job, cancelled):
        from ser import alignment, recognition
        self.ensure_running()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with theirs, self._lock:
            try:
                if self._control is None:
                    raise OSError('the aligner is closed')
                socket.send_fds(self._control, [b'j'], [theirs.fileno()])
            except OSError as error:
                mine.close()
                raise AlignmentProcessError('no alignment helper process (%s)' % error) from None
        connection = multiprocessing.connection.Connection(mine.detach())
        try:
            if not connection.poll(ANSWER_TIMEOUT_SECONDS):
                raise AlignmentProcessError('no alignment process within %d s'
                                            % ANSWER_TIMEOUT_SECONDS)
            child = connection.recv()
            connection.send(job)
            status, value = _answer_of(connection, child, cancelled)
        except (EOFError, OSError):
            raise AlignmentProcessError('the alignment process died before answering') from None
        finally:
            connection.close()
        if status == 'alignment_error':
            raise alignment.AlignmentError(value)
        if status == 'recognition_error':
            raise recognition.RecognitionError(value)
        if status == 'error':
            raise AlignmentProcessError('alignment failed:\n%s' % value)
        return value

    def close(self):
        """Stop the helper process (children still running finish their call)."""
        with self._lock:
            control, self._control = self._control, None
        if control is None:
            return
        control.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _answer_of(connection, child, cancelled):
    """The child's reply, waited for in short steps so that a caller who
    left (`cancelled` set) has its child killed at once."""
    deadline = time.monotonic() + ANSWER_TIMEOUT_SECONDS
    while not connection.poll(CANCEL_POLL_SECONDS):
        if cancelled is not None and cancelled.is_set():
            _kill(child)
            raise helper.Cancelled('alignment stopped: the caller left')
        if time.monotonic() > deadline:
            _kill(child)
            raise AlignmentProcessError('no alignment within %d s' % ANSWER_TIMEOUT_SECONDS)
    return connection.recv()


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass    # it has just finished


# --------------------------------------------------------------------------
# The helper process
# --------------------------------------------------------------------------
def serve_forever(control_fd, with_recogniser=False):
    """Fork a child per channel received on `control_fd`; return when the
    service closes it. `with_recogniser`: build the recogniser once, here,
    for the children's recognise jobs."""
    from ser import alignment, phonetic_alignment, recognition
    # The recording's side of an aeneas alignment once, and the phonetic
    # aligner's model loaded and run once, so that every fork inherits their
    # first-call costs paid; espeak stays untouched. Then the heap is frozen:
    # the garbage collector of a fork leaves the inherited pages shared.
    noise = np.random.default_rng(0).standard_normal(alignment.SAMPLE_RATE).astype(np.float32)
    alignment.recording_mfcc(noise, alignment.aeneas_configuration())
    phonetic_alignment.warm_up()
    recogniser = recognition.Recogniser() if with_recogniser else None
    gc.freeze()
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # Ctrl-C is the service's to handle
    control = socket.socket(fileno=control_fd)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 1, 1)
        except OSError:
            return
        if not message:
            return
        _reap_finished_children()
        if not fds:
            continue
        if os.fork() == 0:
            control.close()
            status = 1
            try:
                _answer(fds[0], recogniser)
                status = 0
            finally:
                os._exit(status)
        os.close(fds[0])


def _reap_finished_children():
    """Collect the children that have answered (their CPU time then counts in
    this process's children's time, which a benchmark reads)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _answer(fd, recogniser):
    from ser import alignment, recognition
    connection = multiprocessing.connection.Connection(fd)
    try:
        connection.send(os.getpid())    # the service kills this process when its caller leaves
        job = connection.recv()
        try:
            if job[0] == 'recognise':
                reply = ('ok', recogniser.words(job[1]))
            else:
                _, samples, text, language = job
                reply = ('ok', alignment.align_text(samples, alignment.SAMPLE_RATE, text,
                                                    language))
        except alignment.AlignmentError as error:
            reply = ('alignment_error', str(error))
        except recognition.RecognitionError as error:
            reply = ('recognition_error', str(error))
        except Exception:  # reported to the service, which logs it
            reply = ('error', traceback.format_exc())
        connection.send(reply)
    finally:
        connection.close()
