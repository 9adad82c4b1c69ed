/**
 * The page-table entry and the per-page flag bits (the PTE bits sksm needs). A PTE (Int32Array)
 * holds the frame number and the writable bit, so a word write tests and translates with one
 * load; the other bits live in a flag byte per page (Uint8Array) beside it.
 */

/**
 * PTE bit 31 (the entry reads negative): private frame, no protection, a write goes straight to
 * the frame. Cleared by every kind of write protection. Only PagedSpace reads or changes PTEs:
 * everything else goes through its frameAt / isWritable / setFrame / revokeWrite / grantWrite.
 * `pte << pageShift` (and `<< pageShift - 2`) shifts the bit out, so the read paths need no mask.
 */
export const PTE_WRITABLE = -0x80000000
/** PTE bits 0..30: the frame number (below 2^31 >> pageShift: the store is at most 2 GiB). */
export const PTE_FRAME = 0x7fffffff
/** The PTE is an rmap entry of a merge-table frame (kernel: rmap_item on a stable node). */
export const PAGE_MERGED = 2
/** A merge-placed zero page (kernel: zero-pfn PTE with the dirty bit, `is_ksm_zero_pte`). */
export const PAGE_KSM_ZERO = 4
/** uffd-wp bit in async mode: a write clears it, so a clear bit on a registered page reads as WRITTEN. */
export const PAGE_UFFD_WP = 8
/** Pinned by the host (GUP-pin): never merged, moved or discarded. */
export const PAGE_PINNED = 16
/** MADV_MERGEABLE (VM_MERGEABLE), per page rather than per VMA. */
export const PAGE_MERGEABLE = 32
/** Registered for uffd write-protect (UFFDIO_REGISTER_MODE_WP with WP_ASYNC): PAGE_IS_WPALLOWED. */
export const PAGE_UFFD_REG = 64
/** Soft-dirty: set by every write fault. */
export const PAGE_SOFT_DIRTY = 128

/** Bits a write fault clears: the page gets a private, unprotected frame. */
export const PAGE_FAULT_CLEARS = PAGE_UFFD_WP | PAGE_MERGED | PAGE_KSM_ZERO
