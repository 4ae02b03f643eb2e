#!/usr/bin/env bash
# Fetches a real IP database for the lookup benchmark: ip-location-db's
# geo-whois-asn-country MaxMind DB (CC0 / CC BY 4.0, from the npm registry),
# pinned, into DIR (default: $PKV_TOOLS/ip-location-db or
# ~/.cache/pmacct-kafka-vm/ip-location-db). Prints the .mmdb's path:
#   LOOKUP_MMDB=$(scripts/ip-location-db.sh) cargo bench -p pmacct-kafka-vm --bench transform -- lookups
set -Eeuo pipefail
PACKAGE=@ip-location-db/geo-whois-asn-country-mmdb@2.3.2026061719
DIR=${1:-${PKV_TOOLS:-$HOME/.cache/pmacct-kafka-vm}/ip-location-db}
DB="$DIR/package/geo-whois-asn-country.mmdb"
if [ ! -f "$DB" ]; then
    mkdir -p "$DIR"
    (cd "$DIR" && npm pack --silent "$PACKAGE" >/dev/null && tar xzf ./*.tgz && rm -f ./*.tgz)
fi
echo "$DB"
