/**
 * Per-page flag bits, one byte per page (the PTE bits sksm needs).
 * Kept in a Uint8Array beside the page table so the hot path tests one bit.
 */

/** Private frame, no protection: a write goes straight to the frame. Cleared by every kind of write protection. */
export const PAGE_WRITABLE = 1
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
