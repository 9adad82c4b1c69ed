/*
 * ksm_w: map workload W for the kernel's own KSM, for bench/kernel-ksm.ts.
 *
 *   ksm_w <bytes> <dup fraction> <contents> <seed>
 *
 * Maps <bytes> anonymous private memory with MADV_NOHUGEPAGE (ksmd merges 4 KiB pages;
 * a THP would first have to be split), fills the first <dup> fraction of pages with
 * <contents> distinct random contents repeated (page i holds content i mod contents) and
 * the rest with random unique pages, marks the whole range MADV_MERGEABLE, prints
 * "READY pages=<n> dup_pages=<d>" on stdout, then waits until stdin reaches EOF and exits.
 * It never touches /sys/kernel/mm/ksm: the driver does that.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096

/* splitmix64: one independent stream per seed, so every page's content is distinct. */
static uint64_t mix(uint64_t x) {
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static void fill_page(uint64_t *p, uint64_t seed) {
	uint64_t s = mix(seed);
	for (size_t i = 0; i < PAGE / sizeof(uint64_t); i++) {
		s = mix(s);
		p[i] = s | 1; /* never an all-zero page */
	}
}

int main(int argc, char **argv) {
	if (argc != 5) {
		fprintf(stderr, "usage: %s <bytes> <dup fraction> <contents> <seed>\n", argv[0]);
		return 2;
	}
	size_t bytes = strtoull(argv[1], NULL, 10);
	double dup = strtod(argv[2], NULL);
	long contents = strtol(argv[3], NULL, 10);
	uint64_t seed = strtoull(argv[4], NULL, 10);
	if (bytes == 0 || bytes % PAGE != 0 || dup < 0 || dup > 1 || contents < 1) {
		fprintf(stderr, "ksm_w: bad arguments\n");
		return 2;
	}
	size_t pages = bytes / PAGE;
	size_t dup_pages = (size_t)(pages * dup + 0.5);

	unsigned char *region = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED) {
		fprintf(stderr, "ksm_w: mmap: %s\n", strerror(errno));
		return 1;
	}
	if (madvise(region, bytes, MADV_NOHUGEPAGE) != 0) {
		fprintf(stderr, "ksm_w: madvise(MADV_NOHUGEPAGE): %s\n", strerror(errno));
		return 1;
	}
	for (size_t i = 0; i < pages; i++) {
		uint64_t *p = (uint64_t *)(region + i * PAGE);
		if (i < dup_pages)
			fill_page(p, seed * 1000003ULL + (uint64_t)(i % (size_t)contents));
		else
			fill_page(p, (seed + 1) * 0x100000000ULL + i);
	}
	if (madvise(region, bytes, MADV_MERGEABLE) != 0) {
		fprintf(stderr, "ksm_w: madvise(MADV_MERGEABLE): %s\n", strerror(errno));
		return 1;
	}
	printf("READY pages=%zu dup_pages=%zu\n", pages, dup_pages);
	fflush(stdout);

	char buf[256];
	while (read(STDIN_FILENO, buf, sizeof buf) > 0) {
	}
	munmap(region, bytes);
	return 0;
}
