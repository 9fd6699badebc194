"""Load from wrk (a C client) when it is installed, for HTTP benchmarks of small requests.

A Python client process costs more CPU per request than the server's view does, so on a
2-core machine it measures itself; wrk does not. `run_wrk()` runs wrk for a bounded time
with a Lua script that POSTs JSON bodies built per request:

- new subjects: `<prefix>-<thread>-<n>` with n counting up per wrk thread, so every
  request names a subject never sent before;
- repeat subjects: `<prefix>-<thread>-<n mod pool>`, the first `pool` subjects each thread
  sent in an earlier "new" run with the same prefix, thread count and at least `pool`
  requests per thread.

The script's done() prints wrk's summary (requests, duration, errors, non-2xx/3xx
answers) and latency percentiles from wrk's full latency histogram as one JSON line, which
is read back instead of scraping wrk's text. wrk measures closed loop: each connection
sends its next request when the last is answered (gunicorn's sync workers close the
connection after each answer, so wrk reconnects every time, as any client would).

`available()` says whether wrk is on PATH; callers fall back to common.run_load() then.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

_SCRIPT = r"""
local counter, threads = 0, {}
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

local n, prefix, pool, experiment, headers
function init(args)
  prefix, pool, experiment = args[1], tonumber(args[2]), args[3]
  n = -1
  headers = {["Authorization"] = "Bearer " .. args[4], ["Content-Type"] = "application/json"}
end

local countries = {"DE", "FR", "US", "PL"}
function request()
  n = n + 1
  local k = n
  if pool > 0 then k = n % pool end
  local body = string.format(
    '{"experiment":"%s","subject":"%s-%d-%d","attributes":{"country":"%s","plan":"pro"}}',
    experiment, prefix, tid, k, countries[(n % 4) + 1])
  return wrk.format("POST", nil, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK-JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,'
    .. '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    # Socket errors (connect, read, write, timeout) and answers outside 2xx/3xx.
    socket_errors: int
    non_2xx: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    def figures(self) -> dict[str, float]:
        """The same keys as common.report()'s."""
        rate = self.requests / max(self.seconds, 1e-9)
        return {
            "requests": float(self.requests),
            "failed": float(self.socket_errors + self.non_2xx),
            "events_per_second": (self.requests - self.non_2xx) / max(self.seconds, 1e-9),
            "requests_per_second": rate,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
        }


def run_wrk(
    base_url: str,
    path: str,
    *,
    key: str,
    prefix: str,
    experiment: str,
    pool: int = 0,
    seconds: float = 8.0,
    threads: int = 2,
    connections: int = 10,
    cpus: str | None = None,
) -> WrkResult:
    """wrk against base_url+path for `seconds`; `pool` > 0 repeats subjects (see module doc).

    `cpus` (e.g. "1") pins wrk to those cores with taskset.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_SCRIPT)
    try:
        command = [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            script.name,
            f"{base_url}{path}",
            "--",
            prefix,
            str(pool),
            experiment,
            key,
        ]
        if cpus is not None and shutil.which("taskset"):
            command = ["taskset", "-c", cpus, *command]
        done = subprocess.run(  # noqa: S603 - wrk on loopback with our own script
            command, capture_output=True, text=True, check=False, timeout=seconds + 60
        )
    finally:
        os.unlink(script.name)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK-JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line.removeprefix("WRK-JSON "))
    return WrkResult(
        requests=int(raw["requests"]),
        seconds=raw["duration_us"] / 1e6,
        socket_errors=int(raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]),
        non_2xx=int(raw["status"]),
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
    )


def report(label: str, result: WrkResult) -> dict[str, float]:
    """Print one line like common.report() does; returns the figures."""
    figures = result.figures()
    problems = []
    if result.non_2xx:
        problems.append(f"{result.non_2xx} non-2xx")
    if result.socket_errors:
        problems.append(f"{result.socket_errors} socket errors")
    print(
        f"{label:<40} {figures['requests_per_second']:>8,.0f} req/s  "
        f"p50 {result.p50_ms:6.2f} ms  p90 {result.p90_ms:6.2f} ms  "
        f"p99 {result.p99_ms:6.2f} ms  ({result.requests} requests"
        f"{'; ' + ', '.join(problems) if problems else ''}; wrk)"
    )
    return figures
