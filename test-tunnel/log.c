/*
 * log.c - Go-style timestamped log lines (see log.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "log.h"

static int log_quiet;

void log_set_quiet(int quiet)
{
    log_quiet = quiet;
}

void logln(const char *fmt, ...)
{
    char stamp[32];
    struct tm tm;
    time_t now = time(NULL);
    va_list ap;

    if (log_quiet)
        return;
    /* Results on stdout and progress on stderr must interleave in order
     * when both go to one terminal or file. */
    fflush(stdout);
    localtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y/%m/%d %H:%M:%S", &tm);
    fprintf(stderr, "%s ", stamp);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void log_error(const char *fmt, ...)
{
    va_list ap;

    fflush(stdout);
    fputs("Error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}
