#!/usr/bin/env bash
# Makes sure RabbitMQ (127.0.0.1:5672) and PostgreSQL (127.0.0.1:5432) are up, starting the local
# Debian services if they are not, and waits until both answer. Sourced or run by scripts/test
# and scripts/run. Honours AMQP_HOST/AMQP_PORT/PGHOST/PGPORT for non-default locations.
set -euo pipefail

AMQP_HOST=${AMQP_HOST:-127.0.0.1}
AMQP_PORT=${AMQP_PORT:-5672}
PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for() { # name, seconds, command...
  local name=$1 secs=$2; shift 2
  for _ in $(seq 1 $((secs * 2))); do
    if "$@"; then echo "services: $name is up"; return 0; fi
    sleep 0.5
  done
  echo "services: $name did not come up within ${secs}s" >&2
  return 1
}

rabbit_ready() { port_open "$AMQP_HOST" "$AMQP_PORT" && { ! command -v rabbitmq-diagnostics >/dev/null || rabbitmq-diagnostics -q check_port_connectivity >/dev/null 2>&1; }; }
pg_ready() { if command -v pg_isready >/dev/null; then pg_isready -q -h "$PGHOST" -p "$PGPORT"; else port_open "$PGHOST" "$PGPORT"; fi; }

if ! port_open "$AMQP_HOST" "$AMQP_PORT"; then
  if command -v rabbitmqctl >/dev/null && timeout 20 rabbitmqctl -q ping >/dev/null 2>&1; then
    # The node runs but its application is stopped (e.g. an interrupted stop_app).
    echo "services: starting the RabbitMQ application"
    timeout 120 rabbitmqctl start_app || true
  elif command -v rabbitmq-server >/dev/null; then
    echo "services: starting RabbitMQ"
    rabbitmq-server -detached || true
  else
    echo "services: RabbitMQ is not running and rabbitmq-server is not installed" >&2; exit 1
  fi
fi
if ! pg_ready; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "services: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  else
    echo "services: PostgreSQL is not running and pg_ctlcluster is not available" >&2; exit 1
  fi
fi
wait_for RabbitMQ 120 rabbit_ready
wait_for PostgreSQL 60 pg_ready
# The management API (`worker status` rates, KEDA) and the Prometheus endpoint (the live
# Prometheus test): enabling plugins that are on already changes nothing.
if command -v rabbitmq-plugins >/dev/null && [ "$AMQP_HOST" = 127.0.0.1 ]; then
  timeout 60 rabbitmq-plugins enable --quiet rabbitmq_management rabbitmq_prometheus >/dev/null 2>&1 \
    || echo "services: could not enable the RabbitMQ management and prometheus plugins" >&2
  wait_for "RabbitMQ management" 60 port_open 127.0.0.1 15672
  wait_for "RabbitMQ prometheus" 60 port_open 127.0.0.1 15692
fi
