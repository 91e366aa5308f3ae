"""The streaming GROUP BY of benches/streaming.rs in Pathway: `events` events with `user_id`
uniform over `keys` keys and `amount` uniform in [0, 1000), pushed by Pathway's Python
connector and committed every `per_commit` events (Augur commits every epoch), grouped into
count, sum and max per user, kept up to date by Pathway's engine.

Prints the process's CPU seconds (Python and Pathway's engine threads) from start to the end
of the run, and the groups and events in the final answer. With `--generator-only` it prints
the CPU seconds of generating the events alone, the part of the figure that is Python.
"""

import random
import sys
import time

events, keys, per_commit = (int(a) for a in sys.argv[1:4])
generator_only = "--generator-only" in sys.argv


def generate(emit, commit):
    rng = random.Random(7)
    for i in range(events):
        emit(user_id=1 + rng.randrange(keys), amount=rng.random() * 1000.0)
        if (i + 1) % per_commit == 0:
            commit()
    commit()


if generator_only:
    t0 = time.process_time()
    generate(lambda **row: None, lambda: None)
    print(time.process_time() - t0, 0, events)
    sys.exit(0)

import pathway as pw  # noqa: E402


class Schema(pw.Schema):
    user_id: int
    amount: float


class Events(pw.io.python.ConnectorSubject):
    def run(self):
        generate(self.next, self.commit)


t0 = time.process_time()
rows = pw.io.python.read(Events(), schema=Schema, autocommit_duration_ms=None)
per_user = rows.groupby(pw.this.user_id).reduce(
    pw.this.user_id,
    n=pw.reducers.count(),
    total=pw.reducers.sum(pw.this.amount),
    top=pw.reducers.max(pw.this.amount),
)
summary = per_user.reduce(groups=pw.reducers.count(), n=pw.reducers.sum(pw.this.n))
final = {}


def on_change(key, row, time, is_addition):
    if is_addition:
        final.update(row)


pw.io.subscribe(summary, on_change)
pw.run(monitoring_level=pw.MonitoringLevel.NONE)
print(time.process_time() - t0, final.get("groups"), final.get("n"))
