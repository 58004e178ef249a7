#!/usr/bin/env bash
# Make sure RabbitMQ (127.0.0.1:5672) and PostgreSQL (127.0.0.1:5432) answer.
# Starts them when they are installed but stopped; with --install, installs them when missing.
# With --test, also makes sure promtool, amtool and prometheus-alertmanager (Debian's
# prometheus packages) and headless Chromium are there. With --monitoring (make up),
# Prometheus and Alertmanager; with --cluster (make up-cluster) HAProxy too.
set -euo pipefail

install=0
tools=0
monitoring=0
cluster=0
for arg in "$@"; do
  case "$arg" in
    --install) install=1 ;;
    --test) tools=1 ;;
    --monitoring) monitoring=1 ;;
    --cluster) monitoring=1; cluster=1 ;;
    *) echo "usage: $0 [--install] [--test] [--monitoring] [--cluster]" >&2; exit 2 ;;
  esac
done

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 60); do port_open "$port" && return 0; sleep 1; done
  echo "deps: $name did not start listening on 127.0.0.1:$port" >&2
  return 1
}

need_apt() {
  if [ "$install" = 1 ]; then
    echo "deps: installing $*" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "deps: $1 is not installed. Install it (Debian: apt-get install -y $*) or run 'bash scripts/deps.sh --install'." >&2
    exit 1
  fi
}

if ! port_open 5432; then
  command -v pg_ctlcluster >/dev/null || need_apt postgresql
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "deps: starting PostgreSQL $version" >&2
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_port 5432 PostgreSQL
fi
if ! psql -h 127.0.0.1 -U postgres -tAc 'select 1' >/dev/null 2>&1; then
  echo "deps: PostgreSQL on 127.0.0.1:5432 does not accept user postgres without a password (trust auth expected)" >&2
  exit 1
fi

if ! port_open 5672; then
  command -v rabbitmq-server >/dev/null || need_apt rabbitmq-server
  echo "deps: starting RabbitMQ" >&2
  rabbitmq-server -detached || true
  wait_port 5672 RabbitMQ
fi
rabbitmqctl -q await_startup >/dev/null 2>&1 || true

if { [ "$tools" = 1 ] || [ "$monitoring" = 1 ]; } &&
   ! { command -v promtool >/dev/null && command -v prometheus-alertmanager >/dev/null; }; then
  need_apt prometheus prometheus-alertmanager
fi
# Cluster mode (make up-cluster, and its tests): HAProxy in front of the replicas.
if { [ "$tools" = 1 ] || [ "$cluster" = 1 ]; } && ! command -v haproxy >/dev/null; then
  need_apt haproxy
fi
if { [ "$tools" = 1 ] || [ "$cluster" = 1 ]; } && ! command -v redis-server >/dev/null; then
  need_apt redis-server
fi
if [ "$tools" = 1 ] && ! command -v chromium >/dev/null; then
  need_apt chromium
fi
