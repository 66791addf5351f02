/* LD_PRELOAD shim for bench/bench_stall.py: fsync and fdatasync wait while the file named
 * by STALL_FLAG exists, as on a disk whose flushes take seconds (a busy or throttled
 * volume). Writes to the page cache (the WAL's pwrite) are not held: a disk that blocks
 * every write is a different failure, which no arrangement of threads hides. Each call
 * is logged to STALL_LOG as "<function> <main|other> <ms waited>", main being the
 * process's first thread (the bot's event loop). Compiled by the benchmark into a
 * temporary directory; never committed as a binary. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void held(const char *name) {
    const char *flag = getenv("STALL_FLAG");
    const char *log = getenv("STALL_LOG");
    double began = now_ms();
    if (flag != NULL) {
        while (access(flag, F_OK) == 0) usleep(5000);
    }
    if (log != NULL) {
        char line[128];
        int main_thread = syscall(SYS_gettid) == getpid();
        int n = snprintf(line, sizeof line, "%s %s %.1f\n", name,
                         main_thread ? "main" : "other", now_ms() - began);
        int fd = open(log, O_WRONLY | O_APPEND | O_CREAT, 0600);
        if (fd >= 0) {
            ssize_t ignored = write(fd, line, (size_t)n);
            (void)ignored;
            close(fd);
        }
    }
}

int fsync(int fd) {
    static int (*real)(int);
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    held("fsync");
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    held("fdatasync");
    return real(fd);
}
