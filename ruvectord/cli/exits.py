"""Exit codes: the one scheme every command follows (also in `ruvectord --help` and README).

0-2 are the usual Unix meanings; `status` adds 3 and 4 for health, so a cron job or a
monitoring check can tell "the database is fine" from "the check itself failed".
`status --nagios` uses the Nagios plugin scheme instead (0 OK, 1 WARNING, 2 CRITICAL,
3 UNKNOWN) and prints one line with performance data.
"""

from __future__ import annotations

OK = 0  # success; for status: every collection normal, sampled recently, a daemon acting
FAILURE = 1  # a runtime failure: database unreachable, a doctor check failed, verification
USAGE = 2  # bad input: a flag, an argument, the config file, an unknown collection
DEGRADED = 3  # status: a collection in stress, no daemon holds the actor lock, no collection
CRITICAL = 4  # status: a collection critical, in error, stale, or unknown to the database
INTERRUPTED = 130  # Ctrl-C
BROKEN_PIPE = 141  # stdout closed early (`| head -1`): 128 + SIGPIPE, as coreutils report it

NAGIOS_OK, NAGIOS_WARNING, NAGIOS_CRITICAL, NAGIOS_UNKNOWN = 0, 1, 2, 3

EPILOG = """\
exit codes:
  0  success; for status: healthy (every collection normal and sampled recently,
     a daemon holds the actor lock)
  1  runtime failure (database unreachable, schema not migrated, a doctor check failed,
     a signature that does not verify, the daemon did not confirm a request in time)
  2  bad input (flag, argument, config file, unknown collection or action)
  3  status: degraded (a collection in stress, no daemon acting, or no collection)
  4  status: critical (a collection critical, in error, or stale: no recent sample)
  141 stdout was closed early (e.g. piped into head)
  status --nagios: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, one line with perfdata

output: --json prints one JSON document (an object) on stdout; errors stay one line on
stderr. Times are ISO 8601 with an offset in JSON, and carry their zone in tables.
"""
