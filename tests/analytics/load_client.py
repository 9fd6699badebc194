"""An at-least-once ingestion client, a process of its own: `-m tests.analytics.load_client SPEC`.

SPEC is a JSON file (see `ClientSpec`). The client posts tagged predictions in batches and
feedback on some of them over HTTP as fast as the server answers, from `start_at` for
`seconds` (after `trickle_seconds` of small batches at a slow pace, when given), and records
every distinct event it sent in `<output>.npz`, with its request figures in `<output>.json`.

At least once: a request that fails or times out, or is answered 429/5xx, is sent again with
the same body (so with the same event ids) until it is answered 2xx; besides, a share of the
answered batches is sent a second time, as a client that lost the answer would. Any other
answer (400, 409…) is a bug of the client or the server: the client stops with exit code 2.

What is random is drawn with numpy from the seed, per batch: the experiment of each
prediction, its subject (a new one each, or one of the subjects so far for returning ones),
whether it is tagged, the feedback. A subject's variant in an experiment and its attributes
are functions of the subject's number, so concurrent clients agree; a few subjects are
tagged with a second variant (they count in `multiple_exposures`).
"""

from __future__ import annotations

import http.client
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

COUNTRIES = ("DE", "FR", "US", "PL", "GB")
METRICS = ("click", "revenue")
# Click-through rate by variant position (0/1 values), and share of predictions with feedback.
CLICK_RATES = (0.20, 0.26, 0.23, 0.21, 0.24)
CLICK_SHARE = 0.5
REVENUE_SHARE = 0.2
SECOND_REVENUE_SHARE = 0.05
# Subjects whose number is a multiple of this are sometimes tagged with the next variant.
MULTIPLE_EVERY = 41
MULTIPLE_SHARE = 0.3
GIVE_UP_SECONDS = 120.0


def attribute_value(name: str, code: int) -> str:
    """The value sent for attribute `name` (country or cohort) of code `code`."""
    return COUNTRIES[code] if name == "country" else f"k{code:03d}"


@dataclass(frozen=True)
class ClientSpec:
    base_url: str
    key: str
    index: int
    seed: int
    # The first 24 characters of this client's event ids (8-4-4-4-).
    id_prefix: str
    start_at: float
    seconds: float
    output: str
    # experiments: [{"key", "model", "variants": [[key, model_version, weight], ...]}]
    experiments: list[dict[str, Any]]
    # Each prediction is for a new subject (1) or one of the subjects so far (> 1: the mean
    # number of predictions per subject over both clients).
    predictions_per_subject: float = 1.0
    clients: int = 2
    # Attributes of a subject: country (5 values) and, when > 0, cohort (that many values).
    cohorts: int = 0
    batch: int = 500
    trickle_seconds: float = 0.0
    trickle_batch: int = 10
    trickle_pause: float = 0.2
    untagged_share: float = 0.05
    resend_share: float = 0.02
    timeout: float = 15.0


@dataclass
class Figures:
    requests: int = 0
    retried: int = 0
    resent: int = 0
    resent_events: int = 0
    accepted: int = 0
    duplicates: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    connection_errors: int = 0
    first_sent: float = 0.0
    last_answered: float = 0.0
    error: str = ""


def variant_of(
    subjects: np.ndarray, experiments: np.ndarray, cumulative: np.ndarray, sizes: np.ndarray
) -> np.ndarray:
    """A subject's variant position in an experiment: a hash of both against the cumulative
    weights (cumulative[e, v], 1.0 past the experiment's sizes[e] variants)."""
    with np.errstate(over="ignore"):
        mixed = subjects.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        mixed ^= experiments.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9)
        mixed ^= mixed >> np.uint64(31)
        mixed *= np.uint64(0x94D049BB133111EB)
        mixed ^= mixed >> np.uint64(29)
    share = (mixed >> np.uint64(11)).astype(np.float64) / float(2**53)
    found = (share[:, None] >= cumulative[experiments]).sum(axis=1)
    return np.minimum(found, sizes[experiments] - 1)


class Client:
    """Builds, sends and records the events of one client process."""

    def __init__(self, spec: ClientSpec) -> None:
        self.spec = spec
        self.rng = np.random.default_rng(spec.seed)
        self.figures = Figures()
        host, port = spec.base_url.removeprefix("http://").split(":")
        self.address = (host, int(port))
        self.conn = http.client.HTTPConnection(*self.address, timeout=spec.timeout)
        self.headers = {"Authorization": f"Bearer {spec.key}", "Content-Type": "application/json"}
        experiments = spec.experiments
        width = max(len(e["variants"]) for e in experiments)
        # cumulative[e, v]: the weight of variants 0..v of experiment e (1.0 past its last).
        self.cumulative = np.ones((len(experiments), width))
        for number, experiment in enumerate(experiments):
            weights = np.cumsum([variant[2] for variant in experiment["variants"]])
            self.cumulative[number, : len(weights)] = weights
        self.sizes = np.array([len(e["variants"]) for e in experiments])
        self.predictions = 0
        self.recorded: dict[str, list[np.ndarray]] = {}
        self.feedback_buffer: list[bytes] = []
        self.feedback_number = 0

    # --- events ---------------------------------------------------------------------------

    def _record(self, **columns: np.ndarray) -> None:
        for name, values in columns.items():
            self.recorded.setdefault(name, []).append(values)

    def _subjects(self, count: int) -> np.ndarray:
        spec = self.spec
        if spec.predictions_per_subject <= 1:
            # New subjects, numbered apart from the other clients'.
            first = spec.index * 10**12 + self.predictions
            return np.arange(first, first + count, dtype=np.int64)
        # Returning subjects: any of those so far over every client (each client has sent
        # about as many predictions), so subjects are shared and get about
        # predictions_per_subject predictions each.
        so_far = (self.predictions + count) * spec.clients / spec.predictions_per_subject
        return self.rng.integers(0, max(int(so_far), 1), size=count, dtype=np.int64)

    def round(self, count: int) -> tuple[bytes, list[bytes]]:
        """One batch of predictions and the feedback on them (the feedback bodies to send)."""
        spec, rng = self.spec, self.rng
        numbers = np.arange(self.predictions, self.predictions + count, dtype=np.int64)
        subjects = self._subjects(count)
        experiments = rng.integers(0, len(spec.experiments), size=count)
        variants = variant_of(subjects, experiments, self.cumulative, self.sizes)
        switched = (subjects % MULTIPLE_EVERY == 0) & (rng.random(count) < MULTIPLE_SHARE)
        variants = np.where(switched, (variants + 1) % self.sizes[experiments], variants)
        tagged = rng.random(count) >= spec.untagged_share
        countries = subjects % len(COUNTRIES)
        cohorts = (subjects * 7 + 3) % spec.cohorts if spec.cohorts else np.zeros(count, np.int64)
        scores = np.round(rng.random(count), 3)
        latencies = np.round(rng.exponential(20.0, count), 1)
        self._record(
            prediction=numbers,
            subject=subjects,
            experiment=np.where(tagged, experiments, -1),
            variant=variants,
            model_experiment=experiments,
            country=countries,
            cohort=cohorts,
        )
        now = datetime.now(UTC).isoformat()
        events = []
        for i in range(count):
            experiment = spec.experiments[int(experiments[i])]
            variant_key, version, _ = experiment["variants"][int(variants[i])]
            attributes = {"country": attribute_value("country", int(countries[i]))}
            if spec.cohorts:
                attributes["cohort"] = attribute_value("cohort", int(cohorts[i]))
            event: dict[str, Any] = {
                "id": self.prediction_id(int(numbers[i])),
                "model": experiment["model"],
                "model_version": version,
                "subject": f"s{int(subjects[i])}",
                "attributes": attributes,
                "output": {"score": float(scores[i])},
                "latency_ms": float(latencies[i]),
                "occurred_at": now,
            }
            if tagged[i]:
                event["experiment"] = experiment["key"]
                event["variant"] = variant_key
            events.append(event)
        self.predictions += count
        feedback = self._feedback(numbers, variants, now)
        return orjson.dumps({"events": events}), feedback

    def _feedback(self, numbers: np.ndarray, variants: np.ndarray, now: str) -> list[bytes]:
        rng = self.rng
        count = numbers.size
        clicked = rng.random(count) < CLICK_SHARE
        click_values = (rng.random(count) < np.take(CLICK_RATES, variants)).astype(np.float64)
        revenue = rng.random(count) < REVENUE_SHARE
        second = revenue & (rng.random(count) < SECOND_REVENUE_SHARE)
        revenue_values = np.round(rng.exponential(10.0, count), 2)
        second_values = np.round(rng.exponential(10.0, count), 2)
        targets = np.concatenate([numbers[clicked], numbers[revenue], numbers[second]])
        metrics = np.concatenate(
            [np.zeros(clicked.sum(), np.int8), np.ones(revenue.sum() + second.sum(), np.int8)]
        )
        values = np.concatenate(
            [click_values[clicked], revenue_values[revenue], second_values[second]]
        )
        self._record(feedback_prediction=targets, feedback_metric=metrics, feedback_value=values)
        events = []
        for target, metric, value in zip(
            targets.tolist(), metrics.tolist(), values.tolist(), strict=True
        ):
            events.append(
                {
                    "id": self.feedback_id(self.feedback_number),
                    "prediction_id": self.prediction_id(target),
                    "metric": METRICS[metric],
                    "value": value,
                    "occurred_at": now,
                }
            )
            self.feedback_number += 1
        return [
            orjson.dumps({"events": events[start : start + self.spec.batch]})
            for start in range(0, len(events), self.spec.batch)
        ]

    def prediction_id(self, number: int) -> str:
        return f"{self.spec.id_prefix}0{number:011x}"

    def feedback_id(self, number: int) -> str:
        return f"{self.spec.id_prefix}f{number:011x}"

    # --- sending ----------------------------------------------------------------------------

    def post(self, path: str, body: bytes) -> None:
        """Send until answered 2xx (then, for a share of bodies, once more)."""
        answer = self._send_until_stored(path, body)
        if self.rng.random() < self.spec.resend_share:
            again = self._send_until_stored(path, body)
            self.figures.resent += 1
            self.figures.resent_events += answer["accepted"] + answer["duplicates"]
            if again["accepted"] != 0:
                raise RuntimeError(f"a batch sent again was stored again: {again}")

    def _send_until_stored(self, path: str, body: bytes) -> dict[str, int]:
        figures = self.figures
        given_up_at = time.monotonic() + GIVE_UP_SECONDS
        pause = 0.05
        while True:
            figures.requests += 1
            figures.first_sent = figures.first_sent or time.time()
            try:
                self.conn.request("POST", path, body=body, headers=self.headers)
                response = self.conn.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException):
                figures.connection_errors += 1
                self.conn.close()
                self.conn = http.client.HTTPConnection(*self.address, timeout=self.spec.timeout)
            else:
                status = str(response.status)
                figures.statuses[status] = figures.statuses.get(status, 0) + 1
                if 200 <= response.status < 300:
                    figures.last_answered = time.time()
                    answer = orjson.loads(payload)
                    figures.accepted += answer["accepted"]
                    figures.duplicates += answer["duplicates"]
                    return {"accepted": answer["accepted"], "duplicates": answer["duplicates"]}
                if response.status != 429 and response.status < 500:
                    raise RuntimeError(f"POST {path} answered {status}: {payload[:2000]!r}")
            if time.monotonic() > given_up_at:
                raise RuntimeError(f"POST {path} failed for {GIVE_UP_SECONDS} s")
            figures.retried += 1
            time.sleep(pause)
            pause = min(pause * 2, 2.0)

    def run(self) -> None:
        spec = self.spec
        while time.time() < spec.start_at:
            time.sleep(0.001)
        stop_at = spec.start_at + spec.seconds
        trickle_until = spec.start_at + spec.trickle_seconds
        rounds = 0
        while time.time() < stop_at:
            trickle = time.time() < trickle_until
            predictions, feedback = self.round(spec.trickle_batch if trickle else spec.batch)
            self.feedback_buffer += feedback
            # Every fourth round the feedback goes first: it reaches the server before the
            # predictions it is about.
            if rounds % 4 == 3:
                self._flush_feedback()
            self.post("/api/v1/predictions", predictions)
            self._flush_feedback()
            rounds += 1
            if trickle:
                time.sleep(spec.trickle_pause)

    def _flush_feedback(self) -> None:
        for body in self.feedback_buffer:
            self.post("/api/v1/feedback", body)
        self.feedback_buffer = []

    def save(self) -> None:
        arrays: dict[str, Any] = {
            name: np.concatenate(parts) for name, parts in self.recorded.items()
        }
        np.savez(self.spec.output + ".npz", **arrays)
        Path(self.spec.output + ".json").write_text(json.dumps(self.figures.__dict__))


def main(spec_path: str) -> int:
    spec = ClientSpec(**json.loads(Path(spec_path).read_text()))
    client = Client(spec)
    code = 0
    try:
        client.run()
    except RuntimeError as error:
        client.figures.error = str(error)
        code = 2
    client.save()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
