/*
 * ksm_files: load memory images for the kernel's own KSM, for bench/kernel-real.ts.
 *
 *   ksm_files <image> [<image> ...]
 *
 * For each image (a file whose size is a multiple of 4 KiB): maps that many bytes of
 * anonymous private memory, MADV_NOHUGEPAGE (ksmd merges 4 KiB pages; a THP would first have
 * to be split), reads the file into it (every page is populated, zero pages included, as a
 * guest's RAM is), then marks the mapping MADV_MERGEABLE. One mapping per image, as one guest
 * or interpreter per process would have. Prints "READY pages=<n> dup_pages=0" on stdout, then
 * waits until stdin reaches EOF and exits. It never touches /sys/kernel/mm/ksm: the driver does.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE 4096

static int load(const char *path, size_t *pages) {
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		fprintf(stderr, "ksm_files: open %s: %s\n", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || st.st_size == 0 || st.st_size % PAGE != 0) {
		fprintf(stderr, "ksm_files: %s: size is not a positive multiple of %d\n", path, PAGE);
		close(fd);
		return -1;
	}
	size_t bytes = (size_t)st.st_size;
	unsigned char *region = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED || madvise(region, bytes, MADV_NOHUGEPAGE) != 0) {
		fprintf(stderr, "ksm_files: mmap/madvise(MADV_NOHUGEPAGE): %s\n", strerror(errno));
		close(fd);
		return -1;
	}
	size_t done = 0;
	while (done < bytes) {
		ssize_t n = read(fd, region + done, bytes - done);
		if (n <= 0) {
			fprintf(stderr, "ksm_files: read %s: %s\n", path, n == 0 ? "short file" : strerror(errno));
			close(fd);
			return -1;
		}
		done += (size_t)n;
	}
	close(fd);
	/* read() into a page that is still zero leaves it unpopulated only if the kernel skips
	 * the copy; it does not, but touch every page anyway so zero pages are really mapped. */
	for (size_t off = 0; off < bytes; off += PAGE) ((volatile unsigned char *)region)[off] = region[off];
	if (madvise(region, bytes, MADV_MERGEABLE) != 0) {
		fprintf(stderr, "ksm_files: madvise(MADV_MERGEABLE): %s\n", strerror(errno));
		return -1;
	}
	*pages += bytes / PAGE;
	return 0;
}

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: %s <image> [<image> ...]\n", argv[0]);
		return 2;
	}
	size_t pages = 0;
	for (int i = 1; i < argc; i++)
		if (load(argv[i], &pages) != 0) return 1;
	printf("READY pages=%zu dup_pages=0\n", pages);
	fflush(stdout);
	char buf[256];
	while (read(STDIN_FILENO, buf, sizeof buf) > 0) {
	}
	return 0;
}
