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
  snapshot    Hibernate memory images or the demo's interpreters to a deduplicated on-disk
              store (each distinct page once), restore them, list, remove, gc, du.
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
  sksm snapshot save fleet-1 guest0.raw guest1.raw && sksm snapshot du

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
     how much of the saving is zero pages and how much merged non-zero duplicates, and a chart
     of memory saved over time (terminal; with --out also an SVG file).
  4. Resumes one instance from its merged space: copies the pages back into a fresh
     interpreter's memory and evaluates more code there, checking that the state its script
     built (a closure counter, a Map, a class instance) carried on.

Options
  --small          A 3-instance fleet (also SKSM_DEMO_SMALL=1): what CI runs
  --instances N    Fleet size (default 8, or 3 with --small; 2..32)
  --out DIR        Write demo-savings.svg and demo-results.json there (default: write no files)
  --no-chart       Skip the terminal chart (the SVG is still written)

Example
  sksm demo --instances 12 --out ./out
`

/** `sksm estimate --help`. */
export const ESTIMATE_HELP = `sksm estimate: how much would KSM-style merging save on these processes or images?

Usage: sksm estimate [--pid PID ...] [FILE ...] [options]

Sources
  --pid PID        A live Linux process (repeatable). Reads /proc/PID/smaps for the mappings,
                   /proc/PID/pagemap for present anonymous pages (and, as root, their physical
                   pages, with /proc/kpageflags), /proc/PID/mem for their bytes.
                   Needs root, CAP_SYS_PTRACE, or ptrace rights over the process (same user with
                   kernel.yama.ptrace_scope=0, or being its parent). The process keeps running;
                   the result is a snapshot taken while it ran.
  FILE             A raw memory image (guest RAM dump, core-less heap snapshot, VM balloon...):
                   read as consecutive pages; a partial last page is zero-padded.

What counts
  Only pages KSM could merge: present anonymous pages of private mappings (includes
  copy-on-write copies of private file mappings; excludes page cache, shared memory, swapped-out
  pages and pages still on the kernel's zero page). Files count every page.
  Physical pages count once: as root, pages mapped by several processes (fork/COW) are matched by
  page frame number; a content whose copies are all one physical page saves nothing (the
  kernel never substitutes a KSM page for a forked page). Without root those pages are left out
  and the report says how many.
  The counts follow the kernel: N identical pages with max_page_sharing M make
  ceil-ish N/M KSM pages (a last lone page stays unshared). pages_sharing is the kernel's
  counter; "saved" is the physical memory freed (less than pages_sharing when forked mappings
  of a page are merged). general_profit subtracts 64 bytes of rmap item per scanned page.
  Per process, the figures of /proc/PID/ksm_stat after merging: ksm_merging_pages,
  ksm_zero_pages, ksm_process_profit. They do not depend on the order of the sources: sources
  are read pids first (ascending), then files by path; one given twice is read once (a note).

Why not more
  The report lists, each with its figure: file-backed or shared memory, pages already one
  physical page (fork/COW), pages in mappings not opted in (no VM_MERGEABLE: smaps VmFlags "mg";
  PR_SET_MEMORY_MERGE from /proc/PID/ksm_stat), pages on the zero page, swapped-out pages, unique
  contents, duplicates at the same offset vs elsewhere (layouts moved by ASLR/KASLR), and a hint
  when interpreter processes share little (randomised hash seeds).

Options
  --max-page-sharing N   /sys/kernel/mm/ksm/max_page_sharing to assume (default 256, >= 2)
  --use-zero-pages       Assume use_zero_pages=1: all-zero pages map the zero page (counted as
                         ksm_zero_pages). Default off, as in the kernel: zero pages then merge
                         like any other content (256 per frame).
  --page-size N          Page size for image files (default: this machine's, 4096)
  --top N                How many most-duplicated contents to list (default 10)
  --mappings N           How many mappings to list, by saving (default 10)
  --json                 Print one JSON document instead of tables (pids as numbers, every
                         figure above, notes and hints)
  --progress / --no-progress   Force the progress bar on stderr on or off (default: on a terminal)

Memory
  Bounded: pages are hashed (SHA-256, 128 bits kept) and counted, never kept. The census holds
  about 8 bytes per page read, ~75 bytes per distinct content and ~40 bytes per page mapped by
  several processes.

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

Before and after the run it prints the load average against the cores, and says so when the
machine is loaded (more runnable tasks than cores): time goals may then FAIL for that reason.

A full run (no --quick, no names) rewrites bench/RESULTS.md.
`

/** `sksm snapshot --help`. */
export const SNAPSHOT_HELP = `sksm snapshot: a deduplicated, crash-safe snapshot store on disk (sksm/snapshot)

Usage: sksm snapshot save NAME FILE... [--page-size N] [--replace]
       sksm snapshot save NAME --demo N [--replace]
       sksm snapshot restore NAME --out DIR [--force]        (images)
       sksm snapshot restore NAME [--instance I]             (interpreters)
       sksm snapshot ls | du | gc
       sksm snapshot rm NAME...

Every distinct non-zero page is stored once for the whole store (content-addressed with a
keyed hash, per merge domain); zero pages cost nothing. A snapshot is committed atomically:
after a crash it is either complete or absent.

Subcommands
  save NAME FILE...   Save raw memory images (one space per file, zero-padded to whole pages)
                      as snapshot NAME. Only pages the store does not hold yet are written.
  save NAME --demo N  Boot N of the demo's QuickJS interpreters (1..64), hibernate their
                      linear memories and save them as snapshot NAME.
  restore NAME        Images: write each image back into --out DIR, byte-exact, under its
                      original file name. Interpreters: resume instance --instance I from disk
                      and show that it carries on where the hibernated one stopped.
  ls                  List the snapshots (name, kind, spaces, logical and non-zero bytes, time).
  rm NAME...          Delete snapshots; their pages stay on disk until gc.
  gc                  Free stored pages no snapshot references and compact the pack files.
  du                  Logical bytes, non-zero bytes, stored bytes, bytes on disk, dedup ratio.

Options
  --store DIR      The store's directory (default: $SKSM_STORE, else ./sksm-snapshots; created
                   on first use)
  --page-size N    Page size for image files, a power of two (default 4096)
  --replace        save: overwrite a snapshot of that name (atomically); default: refuse
  --compress C     save: none or deflate (default none): deflate each new page on disk when
                   that makes it smaller (about 3x less disk on interpreter heaps, slower saves);
                   a store may mix both, every command reads both
  --out DIR        restore: directory to write the images into (must exist)
  --force          restore: overwrite image files that exist in --out DIR
  --instance I     restore: which interpreter of a --demo snapshot to resume (default 0)
  --json           Print one JSON document
  --progress / --no-progress   Force the progress bar on stderr on or off (default: on a
                   terminal, off with --json)

Examples
  sksm snapshot save guests guest0.raw guest1.raw guest2.raw
  sksm snapshot du --json
  sksm snapshot restore guests --out ./restored
  sksm snapshot save fleet --demo 8 --store /var/lib/sksm && sksm snapshot restore fleet --instance 3 --store /var/lib/sksm
  sksm snapshot rm guests && sksm snapshot gc
`

/** `sksm help --help`. */
export const HELP_HELP = `sksm help: show the help of a command

Usage: sksm help [COMMAND]

  COMMAND    demo, estimate, bench or snapshot (default: the overview, as sksm --help)

The same text as sksm COMMAND --help.
`

/** Help text by command name. */
export const HELP: Readonly<Record<string, string>> = { demo: DEMO_HELP, estimate: ESTIMATE_HELP, bench: BENCH_HELP, snapshot: SNAPSHOT_HELP }
