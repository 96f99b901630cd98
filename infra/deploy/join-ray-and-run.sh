#!/bin/sh
# Entry point of a worker container in a Ray cluster: a Ray driver must run on a Ray node,
# so the container joins the cluster first as a node without CPUs (no shard lands on it:
# shards need the custom resource only the Ray worker nodes have), then runs the worker.
#   RAY_ADDRESS=ray-head:6379 join-ray-and-run.sh worker [flags]
set -eu
: "${RAY_ADDRESS:?set RAY_ADDRESS to the Ray head, host:port}"
ray start --address="$RAY_ADDRESS" --num-cpus=0 --disable-usage-stats
exec antirelou "$@"
