/**
 * The page-table entry and the per-page flag bits (the PTE bits sksm needs). A PTE (Int32Array)
 * holds the frame number and the writable bit, so a word write tests and translates with one
 * load; the other bits live in a flag byte per page (Uint8Array) beside it.
 */

/**
 * PTE bit 31 (the entry reads negative): private frame, no protection, a write goes straight to
 * the frame. Cleared by every kind of write protection. Only PagedSpace reads or changes PTEs:
 * everything else goes through its frameAt / isWritable / setFrame / revokeWrite / grantWrite.
 */
export const PTE_WRITABLE = -0x80000000
/**
 * PTE bits 0..30: where the frame starts in the store's Uint32Array, `frame << pageShift - 2`
 * (below 2^29: the store is at most 2 GiB). An aligned word is at `(pte & PTE_FRAME) | word` and
 * a byte at `(pte << 2) | offset` (the shift drops PTE_WRITABLE): no shift by the page size.
 */
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
