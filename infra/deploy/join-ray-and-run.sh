#!/bin/sh
# Entry point of a deciding worker's container in a Ray cluster: a Ray driver must run on a
# Ray node, so the container joins the cluster first as a node without CPUs (no shard lands
# on it: shards need the custom resource only the Ray worker nodes have), then runs the
# worker (`worker --role decide`: it holds no provider key, since a Ray node runs tasks that
# others submit). The cluster is joined with its token: RAY_AUTH_MODE=token and
# RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH), or RAY_AUTH_MODE=disabled, said, for an open one.
#   RAY_ADDRESS=ray-head:6379 RAY_AUTH_MODE=token RAY_AUTH_TOKEN=... join-ray-and-run.sh worker [flags]
set -eu
: "${RAY_ADDRESS:?set RAY_ADDRESS to the Ray head, host:port}"
case "${RAY_AUTH_MODE:-}" in
    token)
        if [ -z "${RAY_AUTH_TOKEN:-}" ] && [ -z "${RAY_AUTH_TOKEN_PATH:-}" ]; then
            echo "join-ray-and-run.sh: RAY_AUTH_MODE=token needs RAY_AUTH_TOKEN (the Ray cluster's token)" >&2
            exit 2
        fi ;;
    disabled)
        echo "join-ray-and-run.sh: WARNING joining the Ray cluster at $RAY_ADDRESS without authentication (RAY_AUTH_MODE=disabled)" >&2 ;;
    *)
        echo "join-ray-and-run.sh: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (the Ray cluster's token), or RAY_AUTH_MODE=disabled to join an open cluster knowingly" >&2
        exit 2 ;;
esac
ray start --address="$RAY_ADDRESS" --num-cpus=0 --disable-usage-stats
exec antirelou "$@"
