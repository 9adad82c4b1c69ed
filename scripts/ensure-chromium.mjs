#!/usr/bin/env node
/**
 * `npm test`'s pretest step: the browser tests (test/package/browser.test.ts) drive Debian's
 * chromium. When it is missing and this runs as root with apt-get, install it (idempotent; a
 * failing `apt-get update`, e.g. one index during a mirror sync, is tolerated: what matters is
 * whether chromium installs). Otherwise say in one line what to do; the browser tests then fail
 * with the same advice. CHROMIUM_PATH names a browser elsewhere.
 */
import { existsSync } from "node:fs"
import { aptEnsure, onPath } from "./apt-ensure.mjs"

function have() {
  if (process.env.CHROMIUM_PATH && existsSync(process.env.CHROMIUM_PATH)) return true
  if (existsSync("/usr/bin/chromium") || existsSync("/usr/bin/chromium-browser")) return true
  return onPath("chromium") || onPath("chromium-browser")
}

if (!have()) aptEnsure("chromium", "the browser tests", "the browser tests need Chromium: apt-get install -y chromium (as root), or set CHROMIUM_PATH")
