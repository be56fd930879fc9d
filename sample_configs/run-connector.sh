#!/bin/sh
# run-connector.sh ENV_FILE COMMAND [ARG...]
#
# The cron wrapper of sample_configs/crontab: load the token from ENV_FILE, run COMMAND (a
# `connector extract ...` or `connector report ...` line), pass its output through and alert on
# its exit code. Plain POSIX sh, so it runs under cron's /bin/sh; cron lines cannot span lines,
# which is why this logic lives here and not in the crontab.
#
#   ENV_FILE   sourced with every assignment exported; holds MODEL_REGISTRY_TOKEN=... and
#              nothing anyone else may read: mode 0600, owned by the user the crontab runs as
#              (a warning is raised when group or others can read it). It may also set
#              ALERT_COMMAND.
#   COMMAND    run as given; its stdout and stderr are this script's, so the crontab line
#              appends both to the log (`>> extract.log 2>&1`). Prefix `timeout 6h` to bound a
#              hung run: timeout then signals the connector (SIGTERM, to it and its process
#              group), which stops cleanly, writes its summary and run record, and exits 143;
#              but timeout itself exits 124, and that is the code this script sees and pages on.
#
# Alerts, by the exit code of COMMAND (the connector's: README, "Exit codes"):
#   0           ok: no alert
#   3 partial   warn: published, but some models failed (see `failures` in the log); a look in
#               the morning, not a page
#   6 lock_held warn: the previous run still holds the output lock (it names its pid and start
#               time in the log); a page only if it keeps happening
#   10 held     page, its own message: a check held the day's snapshot (kept under _held/);
#               a person reviews it (`connector status`) and accepts or discards it. Never
#               retried: a new run observes another moment, not the one that was held
#   other       page: 1 internal, 2 config, 4 auth, 5 incompatible_api, 7 output,
#               8 not_published, 9 shards_incomplete, 11 stale (`connector status
#               --max-age`), 124 timed_out (`timeout` stopped a run that took too long),
#               126/127 the command could not be run, 130 interrupted (SIGINT), 143 terminated
#               (SIGTERM from anything but `timeout`: a shutdown, a kill), 137 killed by SIGKILL
#               (`timeout --kill-after`, the OOM killer), other >128 killed by that signal
# The script exits with COMMAND's exit code (2 when ENV_FILE cannot be read or no COMMAND is
# given), so whatever runs it can tell the outcomes apart too.
#
# Alert hook: ALERT_COMMAND (environment or ENV_FILE), run as `$ALERT_COMMAND LEVEL MESSAGE`
# with LEVEL `warn` or `page` (split on spaces, no quoting). Unset, alerts go to syslog through
# logger(1), tag `model-versions`, if the syslog socket exists (SYSLOG_SOCKET, default
# /dev/log); without one the alert is on stderr only and a line says so. Add mail, a pager or a
# chat webhook in `default_alert` below.

set -u

PROGRAM=run-connector

# Exit code -> name, as in connector/errors.py (ExitCode) and the README's "Exit codes" table.
exit_code_name() {
    case $1 in
        0) echo ok ;;
        1) echo internal ;;
        2) echo config ;;
        3) echo partial ;;
        4) echo auth ;;
        5) echo incompatible_api ;;
        6) echo lock_held ;;
        7) echo output ;;
        8) echo not_published ;;
        9) echo shards_incomplete ;;
        10) echo held ;;
        11) echo stale ;;
        124) echo timed_out ;;
        126) echo not_executable ;;
        127) echo command_not_found ;;
        130) echo interrupted ;;
        143) echo terminated ;;
        *) if [ "$1" -gt 128 ]; then echo "killed_by_signal_$(($1 - 128))"; else echo unknown; fi ;;
    esac
}

default_alert() {  # LEVEL MESSAGE
    case $1 in
        page) priority=user.crit ;;
        *) priority=user.warning ;;
    esac
    # logger(1) exits 0 even when nothing listens on the syslog socket (a container, a host
    # without a syslog daemon), so an alert would be lost without a word: check first, and
    # say so on stderr (the log) when syslog cannot take it.
    socket=${SYSLOG_SOCKET:-/dev/log}
    if ! command -v logger >/dev/null 2>&1; then
        echo "$PROGRAM: logger(1) not found: this alert went to stderr only (set ALERT_COMMAND)" >&2
    elif [ ! -S "$socket" ]; then
        echo "$PROGRAM: no syslog socket at $socket: this alert went to stderr only (set ALERT_COMMAND)" >&2
    elif ! logger -t model-versions -p "$priority" "$1: $2"; then
        echo "$PROGRAM: logger failed: this alert went to stderr only (set ALERT_COMMAND)" >&2
    fi
    # Mail the pages, for instance (needs a configured mail(1)):
    # [ "$1" = page ] && printf '%s\n' "$2" | mail -s "model-versions: $1" oncall@example.com
    return 0
}

alert() {  # LEVEL MESSAGE
    echo "$PROGRAM: $1: $2" >&2
    if [ -n "${ALERT_COMMAND:-}" ]; then
        # Unquoted on purpose: ALERT_COMMAND may carry its own arguments.
        $ALERT_COMMAND "$1" "$2" || echo "$PROGRAM: the alert command failed: $ALERT_COMMAND" >&2
    else
        default_alert "$1" "$2"
    fi
}

if [ $# -lt 2 ]; then
    echo "usage: $0 ENV_FILE COMMAND [ARG...]" >&2
    exit 2
fi
env_file=$1
shift

if [ ! -f "$env_file" ] || [ ! -r "$env_file" ]; then
    # `.` on a missing file would end the shell before any alert could be sent.
    alert page "cannot read the environment file $env_file; nothing was run"
    exit 2
fi
case $env_file in
    */*) ;;
    *) env_file=./$env_file ;;  # `.` would search PATH for a bare name
esac
set -a
. "$env_file"
set +a
case $(ls -lLd -- "$env_file") in
    -???------*) ;;
    *) alert warn "$env_file can be read by group or others: chmod 600 it (it holds the token)" ;;
esac

"$@"
status=$?
name=$(exit_code_name "$status")

case $status in
    0) ;;
    3) alert warn "$* exited 3 ($name): published, but some models failed; see the failures in the log" ;;
    6) alert warn "$* exited 6 ($name): the previous run is still going; nothing was done" ;;
    10) alert page "$* exited 10 ($name): a check held the snapshot (see the log); review it with connector status, then connector accept or discard it; do not re-run" ;;
    *) alert page "$* exited $status ($name): see the log" ;;
esac
exit "$status"
