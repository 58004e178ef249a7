#!/bin/sh
# Render alertmanager.yml from its template. POSIX sh and sed only: runs in the alertmanager image.
set -eu
: "${SAFIRI_PAGER_WEBHOOK_URL:?set SAFIRI_PAGER_WEBHOOK_URL to the pager webhook URL}"
: "${SAFIRI_CHAT_WEBHOOK_URL:?set SAFIRI_CHAT_WEBHOOK_URL to the chat webhook URL}"
template=${1:-$(dirname "$0")/alertmanager.yml.tmpl}
out=${2:-/tmp/alertmanager.yml}
escape() { printf '%s' "$1" | sed -e 's/[\/&|]/\\&/g'; }
sed -e "s|\${SAFIRI_PAGER_WEBHOOK_URL}|$(escape "$SAFIRI_PAGER_WEBHOOK_URL")|" \
    -e "s|\${SAFIRI_CHAT_WEBHOOK_URL}|$(escape "$SAFIRI_CHAT_WEBHOOK_URL")|" \
    "$template" > "$out"
echo "$out"
