/** The help texts of `sksm` and of each command. Kept together so they read as one manual. */

/** `sksm --help`. */
export const MAIN_HELP = `sksm: userspace page merging (KSM / SKSM-style memory deduplication) for TypeScript hosts

Usage: sksm <command> [options]

Commands
  demo        A fleet of real QuickJS interpreters hibernated into sksm address spaces, merged
              three ways side by side (synchronous merge(), the "ksm" scanner, the "tracked"
              scanner), then one instance resumed from its merged memory. This is \`npm start\`.
  estimate    How much would KSM save on these processes or memory images? Reads live Linux
              processes (--pid) or raw image files and reports pages_shared / pages_sharing /
              profit as the kernel would count them, per process and per mapping.
  bench       Run the comparison benchmarks (merge() vs scanner policies vs the kernel's ksmd).
  help        Show help for a command: sksm help estimate

Options
  -h, --help      Show help (also after a command: sksm estimate --help)
  -v, --version   Print the version

Examples
  sksm demo                       # ~5 s: 8 interpreters, a table and a chart
  sksm demo --small               # a 3-instance fleet, a few seconds
  sudo sksm estimate --pid 1234 --pid 5678
  sksm estimate guest0.raw guest1.raw --json > report.json
  sksm bench --quick

Errors go to stderr as one line; the exit code is 1 for failures, 2 for bad usage.
Set SKSM_DEBUG=1 to get stack traces of internal errors.
`

/** `sksm demo --help`. */
export const DEMO_HELP = `sksm demo: merge a fleet of real interpreters and resume one from merged memory

Usage: sksm demo [--small] [--instances N] [--out DIR] [--no-chart]

What it does
  1. Boots N QuickJS interpreters (quickjs-emscripten, WebAssembly). They all load the same
     "framework" script, then each runs its own app on top (different code and data).
  2. Hibernates them: copies each instance's wasm linear memory (16 MiB+) into an sksm address
     space, page by page, as a hypervisor would snapshot guest RAM.
  3. Merges identical copies of the fleet three ways, each in its own Engine:
       merge()    synchronous MADV_MERGE of every space, once
       ksm        the background scanner emulating ksmd (two visits before a page merges)
       tracked    the write-tracking scanner sketched in the SKSM thread
     and prints pages, zero pages, pages_shared, pages_sharing, profit, wall time and CPU time,
     plus a chart of memory saved over time (terminal, and an SVG file whose path it prints).
  4. Resumes one instance from its merged space: copies the pages back into a fresh
     interpreter's memory and evaluates more code there, checking that the state its script
     built (a closure counter, a Map, a class instance) carried on.

Options
  --small          A 3-instance fleet (also SKSM_DEMO_SMALL=1): what CI runs
  --instances N    Fleet size (default 8, or 3 with --small; 2..32)
  --out DIR        Where to write demo-savings.svg (default: a new directory under the OS temp dir)
  --no-chart       Skip the terminal chart (the SVG is still written)

Example
  sksm demo --instances 12 --out ./out
`

/** `sksm estimate --help`. */
export const ESTIMATE_HELP = `sksm estimate: how much would KSM-style merging save on these processes or images?

Usage: sksm estimate [--pid PID ...] [FILE ...] [options]

Sources
  --pid PID        A live Linux process (repeatable). Reads /proc/PID/smaps for the mappings,
                   /proc/PID/pagemap for present anonymous pages, /proc/PID/mem for their bytes.
                   Needs root, CAP_SYS_PTRACE, or ptrace rights over the process (same user with
                   kernel.yama.ptrace_scope=0, or being its parent). The process keeps running;
                   the result is a snapshot taken while it ran.
  FILE             A raw memory image (guest RAM dump, core-less heap snapshot, VM balloon...):
                   read as consecutive pages; a partial last page is zero-padded.

What counts
  Only pages KSM could merge: present pages of private mappings that are exclusively
  anonymous (includes copy-on-write copies of private file mappings; excludes page cache,
  shared memory and swapped-out pages). Files count every page.
  The counts follow the kernel: N identical pages with max_page_sharing M make
  ceil-ish N/M shared frames (a last lone page stays unshared). pages_sharing is what
  merging saves. general_profit subtracts 64 bytes of rmap item per scanned page.

Options
  --max-page-sharing N   /sys/kernel/mm/ksm/max_page_sharing to assume (default 256, >= 2)
  --use-zero-pages       Assume use_zero_pages=1: all-zero pages map the zero page (counted as
                         ksm_zero_pages). Default off, as in the kernel: zero pages then merge
                         like any other content (256 per frame).
  --page-size N          Page size for image files (default: this machine's, 4096)
  --top N                How many most-duplicated contents to list (default 10)
  --mappings N           How many mappings to list, by saving (default 10)
  --json                 Print one JSON document instead of tables
  --progress / --no-progress   Force the progress bar on stderr on or off (default: on a terminal)

Memory
  Bounded: pages are hashed (SHA-256, 128 bits kept) and counted, never kept. The census holds
  about 4 bytes per page read plus ~70 bytes per distinct content.

Limits
  A live process keeps running while it is read: the result is a snapshot of a moving target,
  and an upper bound for memory that changes faster than ksmd scans (volatile pages never
  merge). Swapped-out pages are not counted; huge pages count as their 4 KiB subpages.

Examples
  sudo sksm estimate --pid $(pgrep -d ' --pid ' qemu)
  sudo sksm estimate --pid 1234 --mappings 20 --top 5
  sksm estimate vm1.mem vm2.mem --use-zero-pages --json | jq .totals
`

/** `sksm bench --help`. */
export const BENCH_HELP = `sksm bench: run the comparison benchmarks

Usage: sksm bench [--quick] [--out FILE] [--no-write] [BENCH ...]

Runs bench/run.ts (from a clone of the repository): time and CPU to merge a workload with
synchronous merge(), the "ksm" and "tracked" scanner policies, and the kernel's own ksmd when
/sys/kernel/mm/ksm is writable (root). Writes the table and SVG charts it prints the paths of.

Options
  --quick        Smaller workloads, about a minute (what CI runs); prints only
  --out FILE     Also write the results (markdown) to FILE
  --no-write     Never write a results file
  BENCH ...      Only these benches (names as bench/run.ts lists them)

A full run (no --quick, no names) rewrites bench/RESULTS.md.
`

/** Help text by command name. */
export const HELP: Readonly<Record<string, string>> = { demo: DEMO_HELP, estimate: ESTIMATE_HELP, bench: BENCH_HELP }
