#!/bin/sh
# Bounded load test of the simulator (loopback only, 5 s per run).
# Usage: sim/bench/run.sh [USERS]   (needs wrk: apt-get install -y wrk)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
users=${1:-100}
org=bench-org
out=$(mktemp)
/usr/bin/python3 "$here/../umlo-sim" --listen 127.0.0.1:0 --org $org --api-key bench-key \
    --users "$users" --sites 3 --groups 20 >"$out" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$out"' EXIT
i=0
until grep -q listening "$out"; do
    i=$((i + 1)); [ $i -lt 300 ] || { echo "sim did not start"; exit 1; }
    sleep 0.1
done
base=http://$(sed 's/listening on //' "$out")
echo "== $users users: small GET (directories)"
wrk -t2 -c20 -d5s -s "$here/small.lua" "$base/admin/v2/orgs/$org/directories"
echo "== $users users: same page of 100 expanded users"
wrk -t2 -c20 -d5s -s "$here/users100.lua" "$base/admin/v2/orgs/$org/directories/-/users/search"
echo "== $users users: walking the chain, 100 expanded users per page"
wrk -t1 -c1 -d5s -s "$here/walk100.lua" "$base/admin/v2/orgs/$org/directories/-/users/search"
