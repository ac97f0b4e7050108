"""What an operator watches of the service, in Prometheus' text format
(GET /metrics): requests by status, their latency, the audio heard, the
time spent decoding, aligning and in the model, streams open and how they
ended, and requests whose client left before the answer."""

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge,
                               Histogram, generate_latest)

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    """The service's counters, in a registry of their own (one per
    service, so that several in one process do not share them)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        options = {'registry': self.registry, 'namespace': 'ser'}
        self.requests = Counter('requests', 'POST /emotion-recognition requests answered, by '
                                'HTTP status', ['status'], **options)
        self.latency = Histogram('request_seconds', 'Time from reading a request to its answer',
                                 buckets=LATENCY_BUCKETS, **options)
        self.audio_seconds = Counter('audio_seconds', 'Seconds of audio heard, by route',
                                     ['route'], **options)
        self.stage_seconds = Histogram('stage_seconds', 'Time a request spent decoding, in '
                                       'alignment and in the model', ['stage'],
                                       buckets=LATENCY_BUCKETS, **options)
        self.cancelled = Counter('requests_cancelled', 'Requests stopped because their client '
                                 'left', **options)
        self.streams_open = Gauge('streams_open', 'WebSocket streams open now', **options)
        self.streams = Counter('streams', 'Streams ended, by outcome: summary, bad_input, idle '
                               '(no start message), left, refused (too many open), '
                               'unauthorised, fault', ['outcome'], **options)

    def request_done(self, status, seconds, audio_seconds):
        self.requests.labels(str(status)).inc()
        self.latency.observe(seconds)
        if audio_seconds:
            self.audio_seconds.labels('emotion-recognition').inc(audio_seconds)

    def stream_done(self, outcome, audio_seconds):
        self.streams.labels(outcome).inc()
        if audio_seconds:
            self.audio_seconds.labels('emotion-stream').inc(audio_seconds)

    def exposition(self):
        return generate_latest(self.registry)
