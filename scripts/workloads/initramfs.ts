/**
 * A gzipped newc (SVR4 "070701") cpio archive in plain JavaScript: the guest's initramfs, so
 * no cpio tool is needed. Each entry is a 110-byte header of 8-digit hex fields, the
 * NUL-terminated name, padding to 4 bytes, the data, padding to 4 bytes; a `TRAILER!!!`
 * entry ends the archive.
 */
import { gzipSync } from "node:zlib"

/** One archive entry. */
export interface CpioEntry {
  /** Path without a leading slash. */
  readonly name: string
  /** Full st_mode (type bits included), e.g. 0o100755 for an executable file. */
  readonly mode: number
  readonly data?: Uint8Array
  /** Device numbers of a character or block device. */
  readonly rdev?: readonly [major: number, minor: number]
}

const hex8 = (n: number): string => n.toString(16).padStart(8, "0")
const pad4 = (n: number): number => (4 - (n % 4)) % 4

function header(e: CpioEntry, ino: number): string {
  const size = e.data?.length ?? 0
  const [maj, min] = e.rdev ?? [0, 0]
  const fields = [ino, e.mode, 0, 0, 1, 0, size, 0, 0, maj, min, e.name.length + 1, 0]
  return `070701${fields.map(hex8).join("")}`
}

/** The uncompressed archive. */
export function cpio(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = []
  const all = [...entries, { name: "TRAILER!!!", mode: 0 }]
  all.forEach((e, i) => {
    const head = Buffer.from(`${header(e, i + 1)}${e.name}\0`, "latin1")
    parts.push(head, Buffer.alloc(pad4(head.length)))
    if (e.data !== undefined && e.data.length > 0) parts.push(Buffer.from(e.data), Buffer.alloc(pad4(e.data.length)))
  })
  return Buffer.concat(parts)
}

/**
 * The guest's /init: mount the pseudo file systems, install busybox's applets, do a little
 * work a real machine would (walk the file systems, read the kernel log), print a marker the
 * host waits for, then keep a shell on the serial console.
 */
export const INIT_SCRIPT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmp /tmp
hostname guest
find / -xdev > /tmp/files 2>/dev/null
dmesg > /tmp/dmesg
ls -lR /sys/devices > /tmp/devices 2>/dev/null
echo SKSM-GUEST-UP $(wc -l < /tmp/files) files
exec sh </dev/console >/dev/console 2>&1
`

/** The gzipped initramfs: busybox at /bin/busybox, /init, /dev/console and the mount points. */
export function initramfs(busybox: Uint8Array): Buffer {
  const dir = (name: string): CpioEntry => ({ name, mode: 0o40755 })
  const entries: CpioEntry[] = [
    dir("bin"),
    dir("dev"),
    dir("proc"),
    dir("sys"),
    dir("tmp"),
    dir("etc"),
    { name: "dev/console", mode: 0o20600, rdev: [5, 1] },
    { name: "bin/busybox", mode: 0o100755, data: busybox },
    { name: "bin/sh", mode: 0o120777, data: Buffer.from("busybox") },
    { name: "init", mode: 0o100755, data: Buffer.from(INIT_SCRIPT) },
  ]
  return gzipSync(cpio(entries), { level: 6 })
}
