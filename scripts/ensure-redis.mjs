#!/usr/bin/env node
/**
 * `npm test`'s pretest step: the Redis backend's tests (test/snapshot/redis.test.ts) start real
 * Debian `redis-server` processes (a single node and a 3-node cluster, via `redis-cli --cluster
 * create`). When either binary is missing and this runs as root with apt-get, install
 * redis-server (it brings redis-tools; idempotent; a failing `apt-get update` is tolerated: what
 * matters is whether it installs). Otherwise say in one line what to do; those tests then fail
 * with the same advice. Installing does not leave a server running here: the tests start their own.
 */
import { aptEnsure, onPath } from "./apt-ensure.mjs"

if (!onPath("redis-server") || !onPath("redis-cli")) {
  aptEnsure("redis-server", "the Redis backend tests", "the Redis backend tests need redis-server and redis-cli: apt-get install -y redis-server (as root)")
}
