#!/usr/bin/env bash
# PostgreSQL and RabbitMQ for the production-profile tests (tests/test_production.py) and the load
# benchmark: installs the Debian packages when missing, starts the servers when they are not
# running (no systemd needed), creates the database role the tests use, and waits until both answer.
# Idempotent and quick (about a second) when everything is already up. Needs root (apt-get, service).
#
# The role may create databases and nothing else; every test session creates its own database and
# drops it afterwards. Override the role with WYCKOFFDIFF_PG_USER / WYCKOFFDIFF_PG_PASSWORD (the
# tests read the same variables).
set -euo pipefail

PG_USER=${WYCKOFFDIFF_PG_USER:-aiida_wyckoffdiff}
PG_PASSWORD=${WYCKOFFDIFF_PG_PASSWORD:-aiida_wyckoffdiff}
# RabbitMQ closes a channel whose task stays unacknowledged longer than consumer_timeout (30 min
# by default); AiiDA keeps a task unacknowledged for as long as its process runs, so a scan of
# hours would lose its processes. aiida-core's documentation asks for the timeout to be switched off.
RABBITMQ_ADVANCED=/etc/rabbitmq/advanced.config
RABBITMQ_SETTING='[{rabbit, [{consumer_timeout, undefined}]}].'

say() { echo "services.sh: $*"; }
# The AMQP port answers once the broker has booted; much quicker than asking rabbitmqctl (an Erlang VM).
rabbitmq_up() { timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672' 2>/dev/null; }

missing=()
command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
command -v rabbitmq-server >/dev/null || missing+=(rabbitmq-server)
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Other jobs on the machine may hold the dpkg lock: wait for it instead of failing.
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -e "$RABBITMQ_ADVANCED" ]]; then
    echo "$RABBITMQ_SETTING" >"$RABBITMQ_ADVANCED"
    # A running broker reads the file only when it starts.
    if rabbitmq_up; then
        say 'restarting RabbitMQ to switch off consumer_timeout'
        service rabbitmq-server stop >/dev/null
    fi
elif ! grep -q consumer_timeout "$RABBITMQ_ADVANCED"; then
    say "$RABBITMQ_ADVANCED is someone else's: add {consumer_timeout, undefined} to its rabbit section yourself" >&2
fi

# `pg_isready` answers 0 when the server accepts connections.
if ! pg_isready -q -h localhost; then
    say 'starting PostgreSQL'
    service postgresql start >/dev/null
fi
if ! rabbitmq_up; then
    say 'starting RabbitMQ'
    service rabbitmq-server start >/dev/null
fi

wait_for() {  # NAME COMMAND...: poll for up to two minutes (RabbitMQ takes ~15 s on a busy machine)
    local name=$1
    shift
    for _ in $(seq 120); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 1
    done
    say "$name did not come up within two minutes" >&2
    return 1
}
wait_for PostgreSQL pg_isready -q -h localhost
wait_for RabbitMQ rabbitmq_up

psql_admin() { su postgres -c "psql -v ON_ERROR_STOP=1 -qtAc \"$1\""; }
if [[ "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'")" != 1 ]]; then
    say "creating PostgreSQL role $PG_USER"
    psql_admin "CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD'"
fi
say "PostgreSQL (role $PG_USER) and RabbitMQ are up"
